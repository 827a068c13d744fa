"""merge the auth, payments and order-saga branches into one head

Revision ID: 0007
Revises: 0003, 0004, 0006
Create Date: 2026-11-24

The auth (0003), payments (0004) and order/API (0005-0006) migrations were written in parallel from
the same parents; this joins them so later migrations have a single parent again.
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | Sequence[str] | None = ("0003", "0004", "0006")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
