"""float transfers: a RETURNED status (issue 20, ops' resolution of a transfer in NEEDS_ATTENTION)

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-01

A transfer the sending venue sent and the receiving venue never credited can come back to the sending
venue; ops say so (two staff above the limit) and the saga books it back (`RETURNED`, the network fee spent).
Downgrading fails while a RETURNED row exists (the old constraint would not hold it).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "'AWAITING_APPROVAL', 'APPROVED', 'SENDING', 'IN_FLIGHT', 'SETTLED', 'REJECTED', 'NEEDS_ATTENTION'"
NEW = OLD + ", 'RETURNED'"


def upgrade() -> None:
    op.drop_constraint("ck_float_transfers_status", "float_transfers", type_="check")
    op.create_check_constraint("ck_float_transfers_status", "float_transfers", f"status IN ({NEW})")


def downgrade() -> None:
    op.drop_constraint("ck_float_transfers_status", "float_transfers", type_="check")
    op.create_check_constraint("ck_float_transfers_status", "float_transfers", f"status IN ({OLD})")
