"""Benchmarks behind `make bench`: each module `bench/<name>.py` has `main() -> None` and writes
`bench/results/<name>.json` through `bench.common.write_result`."""
