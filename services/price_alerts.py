"""A customer's price alerts, and the check that fires them (docs/architecture.md §C.9).

Create, list and delete are the customer's own (another's alert is `PriceAlertNotFound`, never
"forbidden"). A customer may keep `price_alert_limit_per_customer` alerts; the count is taken under a lock
on the customer's user row, so two concurrent creates cannot both pass it.

`check_alerts` is the evaluation the `ops-price-alerts` schedule runs (workflows/price_alerts.py). Per symbol,
in ONE transaction: the active alerts are locked (`FOR UPDATE SKIP LOCKED`: a check still running elsewhere
keeps its rows, this one moves on), each is decided by `services.price_alert_rules` against the venues' best
price at the database's `now()`, and each changed state is written together with, for a firing, its
outbox row (`services.notifications.outbox.enqueue`, event `price_alert`, dedupe key
`price-alert:<id>:<n>`). A crash before the commit leaves nothing; a crash after it leaves the new state, so
the retried check does not fire again; and the dedupe key would refuse a second row for the same firing
anyway. Delivery (email, SMS, in-app) is the outbox dispatcher's.

A symbol with no price from any venue is skipped: an unknown price is not a crossing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.market import SYMBOLS, split_symbol
from models.money import money, money_or_none
from models.price_alerts import (
    AlertDirection,
    PriceAlertCheckInput,
    PriceAlertCheckResult,
    PriceAlertCreate,
    PriceAlertOut,
)
from services.errors import DomainError
from services.notifications.outbox import enqueue
from services.orders.prices import PRICE_PLACES, PRICE_QUANTUM
from services.price_alert_rules import AlertPolicy, AlertState, evaluate

EVENT = "price_alert"
COLUMNS = (
    "id, user_id, symbol, direction, price, recurring, active, armed, fired_count, last_fired_at, "
    "last_fired_price, created_at"
)


class PriceAlertRefused(DomainError):
    """The alert cannot be set as asked (unknown symbol, bad price). Fix the field named."""

    default_code = "invalid_price_alert"
    status = 422


class PriceAlertLimitReached(DomainError):
    """The customer already keeps the maximum number of alerts. Delete one first."""

    default_code = "price_alert_limit_reached"
    status = 409


class PriceAlertNotFound(DomainError):
    """No such alert among the customer's own. Check the id."""

    default_code = "price_alert_not_found"
    status = 404


def alert_out(row: Mapping[Any, Any]) -> PriceAlertOut:
    quote = split_symbol(row["symbol"])[1]
    return PriceAlertOut(
        id=row["id"],
        symbol=row["symbol"],
        direction=AlertDirection(row["direction"]),
        price=money(row["price"], quote),
        recurring=row["recurring"],
        active=row["active"],
        armed=row["armed"],
        fired_count=row["fired_count"],
        last_fired_at=row["last_fired_at"],
        last_fired_price=money_or_none(row["last_fired_price"], quote),
        created_at=row["created_at"],
    )


def _checked_price(body: PriceAlertCreate) -> Decimal:
    if body.symbol not in SYMBOLS:
        raise PriceAlertRefused(
            f"unknown symbol {body.symbol}; we trade {', '.join(SYMBOLS)}", field="symbol"
        )
    price = Decimal(body.price)
    if price <= 0:
        raise PriceAlertRefused("price must be positive", field="price")
    if price != price.quantize(PRICE_QUANTUM):
        raise PriceAlertRefused(f"price has more than {PRICE_PLACES} decimal places", field="price")
    return price


async def create(
    session: AsyncSession, user_id: uuid.UUID, body: PriceAlertCreate, *, limit: int
) -> PriceAlertOut:
    """Record a new alert, armed; refused over the customer's limit."""
    price = _checked_price(body)
    conn = await session.connection()
    await conn.execute(text("SELECT 1 FROM users WHERE id = :u FOR UPDATE"), {"u": user_id})
    count = (
        await conn.execute(text("SELECT count(*) FROM price_alerts WHERE user_id = :u"), {"u": user_id})
    ).scalar_one()
    if count >= limit:
        raise PriceAlertLimitReached(f"you can keep at most {limit} price alerts; delete one first")
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO price_alerts (id, user_id, symbol, direction, price, recurring) "
                    f"VALUES (:id, :u, :s, :d, :p, :r) RETURNING {COLUMNS}"
                ),
                {
                    "id": uuid.uuid4(),
                    "u": user_id,
                    "s": body.symbol,
                    "d": body.direction.value,
                    "p": price,
                    "r": body.recurring,
                },
            )
        )
        .mappings()
        .one()
    )
    await session.commit()
    return alert_out(row)


async def list_alerts(session: AsyncSession, user_id: uuid.UUID) -> list[PriceAlertOut]:
    conn = await session.connection()
    rows = (
        (
            await conn.execute(
                text(f"SELECT {COLUMNS} FROM price_alerts WHERE user_id = :u ORDER BY created_at, id"),
                {"u": user_id},
            )
        )
        .mappings()
        .all()
    )
    return [alert_out(r) for r in rows]


async def delete(session: AsyncSession, user_id: uuid.UUID, alert_id: uuid.UUID) -> None:
    """Remove one of the customer's alerts (a firing already in the outbox is still delivered)."""
    conn = await session.connection()
    deleted = await conn.execute(
        text("DELETE FROM price_alerts WHERE id = :id AND user_id = :u RETURNING id"),
        {"id": alert_id, "u": user_id},
    )
    if deleted.first() is None:
        raise PriceAlertNotFound("no such price alert")
    await session.commit()


@dataclass(frozen=True)
class ObservedPrice:
    """The best bid and ask across the venues for one symbol (None: no venue quoted that side)."""

    bid: Decimal | None
    ask: Decimal | None

    def for_direction(self, direction: AlertDirection) -> Decimal | None:
        """ABOVE watches the bid (what the customer could sell at), BELOW the ask (what they could buy at)."""
        return self.bid if direction is AlertDirection.ABOVE else self.ask


async def check_alerts(
    engine: AsyncEngine, prices: Mapping[str, ObservedPrice], data: PriceAlertCheckInput
) -> PriceAlertCheckResult:
    """Evaluate every active alert of the symbols in `prices` (module docstring), a transaction per symbol."""
    policy = AlertPolicy(band=data.band, cooldown=timedelta(seconds=data.cooldown_seconds))
    result = PriceAlertCheckResult()
    for symbol, observed in prices.items():
        async with engine.begin() as conn:
            now = (await conn.execute(text("SELECT now()"))).scalar_one()
            rows = (
                (
                    await conn.execute(
                        text(
                            f"SELECT {COLUMNS} FROM price_alerts WHERE active AND symbol = :s "
                            "ORDER BY id FOR UPDATE SKIP LOCKED"
                        ),
                        {"s": symbol},
                    )
                )
                .mappings()
                .all()
            )
            for row in rows:
                direction = AlertDirection(row["direction"])
                price = observed.for_direction(direction)
                if price is None:
                    continue
                result.checked += 1
                state = AlertState(
                    direction=direction,
                    price=row["price"],
                    recurring=row["recurring"],
                    active=row["active"],
                    armed=row["armed"],
                    fired_count=row["fired_count"],
                    last_fired_at=row["last_fired_at"],
                )
                decision = evaluate(state, price, now, policy)
                if decision.state == state:
                    continue
                new = decision.state
                await conn.execute(
                    text(
                        "UPDATE price_alerts SET active = :a, armed = :armed, fired_count = :n, "
                        "last_fired_at = :t, "
                        "last_fired_price = CASE WHEN :fired THEN :p ELSE last_fired_price END "
                        "WHERE id = :id"
                    ),
                    {
                        "a": new.active,
                        "armed": new.armed,
                        "n": new.fired_count,
                        "t": new.last_fired_at,
                        "fired": decision.fired,
                        "p": price,
                        "id": row["id"],
                    },
                )
                if decision.fired:
                    result.fired += 1
                    quote = split_symbol(symbol)[1]
                    await enqueue(
                        conn,
                        event=EVENT,
                        user_id=row["user_id"],
                        payload={  # what templates/price_alert.j2 shows, and ids for support
                            "alert_id": str(row["id"]),
                            "symbol": symbol,
                            "direction": direction.value.lower(),
                            "threshold": money(row["price"], quote),
                            "price": money(price, quote),
                            "currency": quote,
                            "recurring": row["recurring"],
                            "firing": new.fired_count,
                        },
                        dedupe_key=f"price-alert:{row['id']}:{new.fired_count}",
                    )
    return result
