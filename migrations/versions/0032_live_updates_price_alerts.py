"""live updates by LISTEN/NOTIFY, and price alerts (issue 17 items 4 and 5)

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-02

Triggers announce, in the writer's own transaction, each change the WebSocket feed shows, on the channel
`live_updates` with ids only (`<kind>:<user id>:<row id>`; services/live_updates_loads.py reads them):

- `o` an order inserted or updated; `t` a trade inserted; `n` an in-app feed row inserted;
- `a` a CUSTOMER account inserted or its balance columns changed (house accounts never notify: their hot
  shards' transactions stay free of NOTIFY's commit-time lock);
- `s` a session revoked (its feed ends at once); `u` a user's status changed.

Only for customers listed in `live_listeners` (a socket open on some API process; models/live_updates.py):
PostgreSQL serialises the commits of notifying transactions. It delivers a NOTIFY only when its transaction
commits, and folds identical payloads of one transaction into one.

`price_alerts` holds each alert with its whole evaluation state (models/price_alerts.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | Sequence[str] | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Only for a customer with a socket open somewhere (`live_listeners`): PostgreSQL serialises the commits of
# notifying transactions, and a customer nobody listens for must not pay for that.
NOTIFY_ROW = """
CREATE FUNCTION live_updates_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM live_listeners WHERE user_id = NEW.user_id) THEN
        PERFORM pg_notify('live_updates', TG_ARGV[0] || ':' || NEW.user_id::text || ':' || NEW.id::text);
    END IF;
    RETURN NULL;
END $$
"""

NOTIFY_USER = """
CREATE FUNCTION live_updates_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM live_listeners WHERE user_id = NEW.id) THEN
        PERFORM pg_notify('live_updates', 'u:' || NEW.id::text || ':' || NEW.id::text);
    END IF;
    RETURN NULL;
END $$
"""

TRIGGERS = {
    "orders_live_updates": "AFTER INSERT OR UPDATE ON orders FOR EACH ROW "
    "EXECUTE FUNCTION live_updates_notify('o')",
    "trades_live_updates": "AFTER INSERT ON trades FOR EACH ROW EXECUTE FUNCTION live_updates_notify('t')",
    "user_notifications_live_updates": "AFTER INSERT ON user_notifications FOR EACH ROW "
    "EXECUTE FUNCTION live_updates_notify('n')",
    "accounts_live_updates_insert": "AFTER INSERT ON accounts FOR EACH ROW WHEN (NEW.kind = 'customer') "
    "EXECUTE FUNCTION live_updates_notify('a')",
    "accounts_live_updates_update": "AFTER UPDATE OF balance, available_balance, reserved_balance ON accounts "
    "FOR EACH ROW WHEN (NEW.kind = 'customer' AND (OLD.balance, OLD.available_balance, OLD.reserved_balance) "
    "IS DISTINCT FROM (NEW.balance, NEW.available_balance, NEW.reserved_balance)) "
    "EXECUTE FUNCTION live_updates_notify('a')",
    "auth_sessions_live_updates": "AFTER UPDATE OF revoked_at ON auth_sessions FOR EACH ROW "
    "WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION live_updates_notify('s')",
    "users_live_updates": "AFTER UPDATE OF status ON users FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION live_updates_notify_user()",
}


def _table(trigger_sql: str) -> str:
    return trigger_sql.split(" ON ", 1)[1].split(" ", 1)[0]


def upgrade() -> None:
    op.create_table(
        "live_listeners",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("listener_pid", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "listener_pid"),
        prefixes=["UNLOGGED"],
    )
    op.execute(NOTIFY_ROW)
    op.execute(NOTIFY_USER)
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")

    op.create_table(
        "price_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=21), nullable=False),
        sa.Column("direction", sa.String(length=5), nullable=False),
        sa.Column("price", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("recurring", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("armed", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("fired_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fired_price", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("direction IN ('ABOVE', 'BELOW')", name="ck_price_alerts_direction"),
        sa.CheckConstraint("price > 0", name="ck_price_alerts_price_positive"),
        sa.CheckConstraint("fired_count >= 0", name="ck_price_alerts_fired_count"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_price_alerts_user_created", "price_alerts", ["user_id", "created_at"])
    op.create_index(
        "ix_price_alerts_active_symbol", "price_alerts", ["symbol"], postgresql_where=sa.text("active")
    )


def downgrade() -> None:
    op.drop_index("ix_price_alerts_active_symbol", table_name="price_alerts")
    op.drop_index("ix_price_alerts_user_created", table_name="price_alerts")
    op.drop_table("price_alerts")
    for name, body in TRIGGERS.items():
        op.execute(f"DROP TRIGGER {name} ON {_table(body)}")
    op.execute("DROP FUNCTION live_updates_notify_user()")
    op.execute("DROP FUNCTION live_updates_notify()")
    op.drop_table("live_listeners")
