"""order saga: notional and hold on the order

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-24

The order saga records the GBP notional each order counts against the customer's rolling 24 h KYC
trading limit, and the ledger hold that funds it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("notional_gbp", sa.Numeric(precision=36, scale=18), nullable=True))
    op.add_column("orders", sa.Column("hold_id", sa.Uuid(), nullable=True))
    op.create_foreign_key("fk_orders_hold", "orders", "holds", ["hold_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint("fk_orders_hold", "orders", type_="foreignkey")
    op.drop_column("orders", "hold_id")
    op.drop_column("orders", "notional_gbp")
