"""The ping activity: round-trips the database so a ping proves the worker's whole wiring."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity


class PingInput(BaseModel):
    message: str


class PingOutput(BaseModel):
    message: str
    database_ok: bool


class PingActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="ping")
    async def ping(self, data: PingInput) -> PingOutput:
        async with self._engine.connect() as conn:
            one = (await conn.execute(text("SELECT 1"))).scalar_one()
        return PingOutput(message=data.message, database_ok=one == 1)
