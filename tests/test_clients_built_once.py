"""Each client is built once per process and injected: one `Ledger` for every activity class of a worker
and for every route of the API, and one venue adapter set shared by the API's market data and payments."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from config import Settings
from services.ledger import Ledger
from workers.registry import Dependencies, build

ROOT = Path(__file__).resolve().parent.parent


def test_every_activity_class_of_a_worker_shares_the_process_ledger(
    settings: Settings, engine: AsyncEngine
) -> None:
    deps = Dependencies(settings=settings, engine=engine, adapters={}, send_email=False)
    instances = {getattr(fn, "__self__", None) for spec in build(deps).values() for fn in spec.activities}
    holders = {h for h in instances if isinstance(getattr(h, "_ledger", None), Ledger)}
    assert {type(h).__name__ for h in holders} >= {
        "OrderActivities",
        "PaymentActivities",
        "TreasuryActivities",
    }
    assert {id(getattr(h, "_ledger", None)) for h in holders} == {id(deps.shared_ledger())}


def _ledger_constructions(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Ledger":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_process_entry_points_build_a_ledger() -> None:
    """Routes and activities take the process's `Ledger` (a dependency, a constructor argument)."""
    assert _ledger_constructions("api") == ["api/main.py:" + _line_of("api/main.py", "Ledger(engine")]
    assert _ledger_constructions("activities") == []
    assert _ledger_constructions("workers") == [
        "workers/registry.py:" + _line_of("workers/registry.py", "Ledger(self.engine")
    ]


def _line_of(file: str, text: str) -> str:
    lines = (ROOT / file).read_text().splitlines()
    return str(next(n for n, line in enumerate(lines, start=1) if text in line))


async def test_the_api_shares_one_venue_adapter_set_between_market_data_and_payments(
    settings: Settings,
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        market = {name: cached.source for name, cached in app.state.market.market().exchanges.items()}
        held = app.state.payments.adapters  # the payments clients' adapters (a method or a mapping)
        payments = held() if callable(held) else held
        assert market and set(market) <= set(payments)
        assert all(market[name] is payments[name] for name in market)
        assert isinstance(app.state.ledger, Ledger)
