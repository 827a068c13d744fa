"""First-trade gate activities: the cooling-off saga's one step (services/first_trade_gates.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models.first_trade_gates import CoolingOffInput, CoolingOffResult
from services import first_trade_gates


class FirstTradeActivities:
    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="first_trade.complete_cooling_off")
    async def complete_cooling_off(self, data: CoolingOffInput) -> CoolingOffResult:
        """Open the cooling-off gate (idempotent: a retry finds it open)."""
        completed = await first_trade_gates.complete_cooling_off(self._engine, data.user_id)
        return CoolingOffResult(user_id=data.user_id, completed=completed)
