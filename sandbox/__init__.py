"""Local stand-ins of the outside world, speaking its protocols over real HTTP.

`sandbox.binance` and `sandbox.kraken` (exchanges ccxt can talk to), `sandbox.otc` (an RFQ desk),
all backed by the matching engine in `sandbox.market`, with fault injection from `sandbox.control`.
`python -m sandbox --base-port N` runs them all; tests use `sandbox.runner.start_venues()`.
"""
