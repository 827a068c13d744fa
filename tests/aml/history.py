"""Constructed customer histories for the AML rule tests: rows written straight into the tables the
features query reads (deposits credited, withdrawals requested, trades executed, a KYC tier-1 record),
each at a chosen time."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@dataclass
class History:
    engine: AsyncEngine
    user_id: uuid.UUID

    @classmethod
    async def new(cls, engine: AsyncEngine) -> History:
        uid = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:id, :e, 'x', 2)"),
                {"id": uid, "e": f"aml-{uid}@example.com"},
            )
        return cls(engine, uid)

    async def kyc(self, *, nationality: str | None, residence: str) -> None:
        details = {"nationality": nationality, "address": {"country": residence, "city": "X"}}
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO kyc_submissions (id, user_id, tier, status, details) "
                    "VALUES (:id, :u, 1, 'APPROVED', CAST(:d AS jsonb))"
                ),
                {"id": uuid.uuid4(), "u": self.user_id, "d": json.dumps(details)},
            )

    async def deposit(
        self,
        amount: str,
        at: datetime,
        *,
        currency: str = "GBP",
        payer: str = "12345678",
        payer_country: str | None = None,
        status: str = "CONFIRMED",
    ) -> uuid.UUID:
        did = uuid.uuid4()
        details: dict[str, Any] = {"payer_sort_code": "040004", "payer_account_number": payer}
        if payer_country:
            details["payer_country"] = payer_country
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO deposits (id, user_id, currency, amount, payment_method, provider, "
                    "provider_tx_id, status, details, created_at) VALUES (:id, :u, :c, :a, 'BANK_TRANSFER', "
                    "'bank', :tx, :s, CAST(:d AS jsonb), :at)"
                ),
                {
                    "id": did,
                    "u": self.user_id,
                    "c": currency,
                    "a": Decimal(amount),
                    "tx": f"tx-{did}",
                    "s": status,
                    "d": json.dumps(details),
                    "at": at,
                },
            )
        return did

    async def withdrawal(self, amount: str, at: datetime, *, status: str = "PENDING") -> uuid.UUID:
        wid = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO withdrawals (id, user_id, currency, amount, status, notional_gbp, "
                    "destination_type, created_at) VALUES (:id, :u, 'GBP', :a, :s, :a, 'bank', :at)"
                ),
                {"id": wid, "u": self.user_id, "a": Decimal(amount), "s": status, "at": at},
            )
        return wid

    async def trade(
        self, side: str, amount: str, price: str, at: datetime, symbol: str = "BTC-GBP"
    ) -> uuid.UUID:
        oid = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO orders (id, user_id, symbol, side, type, status, amount, created_at) "
                    "VALUES (:id, :u, :sym, :side, 'MARKET', 'FILLED', :a, :at)"
                ),
                {"id": oid, "u": self.user_id, "sym": symbol, "side": side, "a": Decimal(amount), "at": at},
            )
            await conn.execute(
                text(
                    "INSERT INTO trades (id, order_id, user_id, symbol, side, amount, price, fee, "
                    "fee_currency, provider, executed_at) "
                    "VALUES (:id, :o, :u, :sym, :side, :a, :p, 0, 'GBP', 'binance', :at)"
                ),
                {
                    "id": uuid.uuid4(),
                    "o": oid,
                    "u": self.user_id,
                    "sym": symbol,
                    "side": side,
                    "a": Decimal(amount),
                    "p": Decimal(price),
                    "at": at,
                },
            )
        return oid

    async def round_trips(
        self, n: int, start: datetime, *, every: timedelta = timedelta(minutes=5)
    ) -> datetime:
        at = start
        for _ in range(n):
            await self.trade("BUY", "0.01", "50000", at)
            at += every
            await self.trade("SELL", "0.01", "50000", at)
            at += every
        return at - every
