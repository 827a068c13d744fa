"""withdrawals: the NEEDS_ATTENTION status

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01

A withdrawal whose outcome at the bank or venue is unknown after repeated lookups, or whose books could not
be completed after the money left, waits in NEEDS_ATTENTION with its hold kept until ops resolve it
(mark paid: the books are completed; mark not paid: the hold is released).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "PENDING",
    "AWAITING_APPROVAL",
    "HALTED",
    "APPROVED",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
    "REJECTED",
    "CANCELLED",
)
AFTER = (*BEFORE, "NEEDS_ATTENTION")


def _check(statuses: tuple[str, ...]) -> None:
    op.drop_constraint("ck_withdrawals_status", "withdrawals", type_="check")
    op.create_check_constraint(
        "ck_withdrawals_status", "withdrawals", "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"
    )


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    op.execute("UPDATE withdrawals SET status = 'PROCESSING' WHERE status = 'NEEDS_ATTENTION'")
    _check(BEFORE)
