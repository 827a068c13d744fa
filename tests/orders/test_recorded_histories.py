"""Order sagas recorded before a change still replay on the current `OrderWorkflow` (determinism)."""

from __future__ import annotations

from tests.histories import replay_recorded
from workflows.orders import OrderWorkflow


async def test_recorded_order_histories_replay_on_the_current_workflow() -> None:
    # Fills, fallbacks, unknown placements resolved by lookups and by ops, resting limit orders, cancels.
    assert await replay_recorded("orders", OrderWorkflow) >= 15
