"""A customer's deposits and withdrawals are keyset pages (`{deposits|withdrawals, next_cursor}`) through
the one cursor codec of `services/pagination.py`, like `/orders` and `/accounts/ledger`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.payments.conftest import Customer, Stack, make_user

# Three rows share one timestamp: the page boundary must fall between them without skipping or repeating.
_TIMES = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (0, 1, 1, 1, 2)]


async def _seed(stack: Stack, customer: Customer, table: str) -> list[str]:
    """Five finished rows of `table` for the customer (no money moves: nothing is held or booked);
    their ids newest first, as the list must show them."""
    rows = [(uuid.uuid4(), at, Decimal(i + 1)) for i, at in enumerate(_TIMES)]
    async with stack.engine.begin() as conn:
        for row_id, at, amount in rows:
            if table == "deposits":
                sql = (
                    "INSERT INTO deposits (id, user_id, currency, amount, status, created_at) "
                    "VALUES (:id, :u, 'GBP', :a, 'FAILED', :at)"
                )
            else:
                sql = (
                    "INSERT INTO withdrawals (id, user_id, currency, amount, status, created_at) "
                    "VALUES (:id, :u, 'GBP', :a, 'CANCELLED', :at)"
                )
            await conn.execute(text(sql), {"id": row_id, "u": customer.id, "a": amount, "at": at})
    newest_first = sorted(rows, key=lambda r: (r[1], r[0]), reverse=True)
    return [str(r[0]) for r in newest_first]


@pytest.mark.parametrize("table", ["deposits", "withdrawals"])
async def test_a_customer_list_pages_by_cursor_without_gaps_or_repeats(stack: Stack, table: str) -> None:
    customer = await make_user(stack)
    other = await make_user(stack)
    expected = await _seed(stack, customer, table)
    await _seed(stack, other, table)  # never shown to `customer`
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    async with stack.http() as c:
        while True:
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await c.get(f"/api/v1/{table}", params=params, headers=customer.headers())
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {table, "next_cursor"}
            seen += [row["id"] for row in body[table]]
            assert all(row["amount"].endswith(".00") for row in body[table])  # money at the GBP scale
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert seen == expected and pages == 3


@pytest.mark.parametrize("table", ["deposits", "withdrawals"])
async def test_a_forged_cursor_is_the_one_invalid_cursor_refusal(stack: Stack, table: str) -> None:
    customer = await make_user(stack)
    async with stack.http() as c:
        r = await c.get(f"/api/v1/{table}", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=customer.headers())
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_cursor"
