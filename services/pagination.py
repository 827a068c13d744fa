"""The one cursor codec of every paged customer endpoint (orders, ledger entries, …).

Pages are keyset pages, newest first, over `(created_at, id)`: a cursor is the last row's pair, base64url
of a JSON list, opaque to clients. `decode_keyset` refuses anything we did not issue with `InvalidCursor`
(a 422 naming `query.cursor`), so a tampered cursor never reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from services.errors import DomainError

CURSOR_MAX_LENGTH = 300


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
