"""The one cursor codec of every paged customer endpoint (orders, ledger entries, deposits, withdrawals),
and `fetch_page`, the one query of such a page.

Pages are keyset pages, newest first, over `(created_at, id)`: a cursor is the last row's pair, base64url
of a JSON list, opaque to clients. `decode_keyset` refuses anything we did not issue with `InvalidCursor`
(a 422 naming `query.cursor`), so a tampered cursor never reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import DomainError

CURSOR_MAX_LENGTH = 300

R = TypeVar("R")
DbRow = Row[*tuple[Any, ...]]  # a row as SQLAlchemy returns it from a textual query

# The keyset condition of a page after a cursor, on the columns the pages are ordered by (newest first).
AFTER_CURSOR = "(created_at, id) < (:c_at, :c_id)"


class InvalidCursor(DomainError):
    """The pagination cursor is not one we issued. Start again without a cursor."""

    default_code = "invalid_cursor"
    status = 422

    def __init__(self, detail: str = "not a cursor we issued; start without one") -> None:
        super().__init__(detail, field="query.cursor")


def encode_keyset(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor of the page after the row (`created_at`, `row_id`)."""
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), str(row_id)]).encode()).decode()


def decode_keyset(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(`created_at`, `id`) of the last row of the previous page; `InvalidCursor` for anything else."""
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = datetime.fromisoformat(created)
        return at, uuid.UUID(row_id)
    # uuid.UUID(5) is an AttributeError; a list of the wrong length a ValueError; bad base64 binascii.Error.
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError) as e:
        raise InvalidCursor() from e


def after_cursor(cursor: str | None, params: dict[str, Any]) -> str:
    """The SQL condition of the rows after `cursor` (`AFTER_CURSOR`, its parameters put in `params`), or
    "TRUE" for the first page. The query orders by `created_at DESC, id DESC` and fetches `limit + 1`."""
    if not cursor:
        return "TRUE"
    params["c_at"], params["c_id"] = decode_keyset(cursor)
    return AFTER_CURSOR


def keyset_page(
    rows: Sequence[R], limit: int, position: Callable[[R], tuple[datetime, uuid.UUID]]
) -> tuple[list[R], str | None]:
    """The page in `rows` (fetched `limit + 1`, to know whether more follow) and the cursor of the next
    page (None at the end); `position` gives a row's (`created_at`, `id`)."""
    page = list(rows[:limit])
    return page, encode_keyset(*position(page[-1])) if len(rows) > limit else None


async def fetch_page(
    engine: AsyncEngine,
    *,
    select: str,
    where: str,
    params: dict[str, Any],
    limit: int,
    cursor: str | None,
    position: Callable[[DbRow], tuple[datetime, uuid.UUID]],
) -> tuple[list[DbRow], str | None]:
    """One page, newest first, of `select` ("SELECT <columns> FROM <table>") filtered by `where` (with
    `params`), after `cursor`; and the next page's cursor. `position` gives a row's (`created_at`, `id`)."""
    params = {**params, "page_limit": limit + 1}
    sql = (
        f"{select} WHERE ({where}) AND {after_cursor(cursor, params)} "
        "ORDER BY created_at DESC, id DESC LIMIT :page_limit"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql), params)).all()
    return keyset_page(rows, limit, position)
