"""`python -m bench [name]`: run one benchmark, or all of them in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

NOT_BENCHMARKS = {"common", "__main__"}


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if m.name not in NOT_BENCHMARKS and not m.name.startswith("_")
    )


def main() -> int:
    names = sys.argv[1:] or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark {unknown}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        print(f"=== bench {name} ===", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


sys.exit(main())
