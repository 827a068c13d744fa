"""staff console: support role, staff sessions, hash-chained audit log (issue 18 items 1 and 3)

Revision ID: 0033
Revises: 0026
Create Date: 2026-12-01

- `users.roles` may hold `support` (read-only customer help in the console).
- `staff_sessions`: console logins, apart from customers' `auth_sessions`.
- `audit_log` is chained like the ledger: `seq`, `prev_hash`, `hash`. A deferred constraint trigger
  chains each inserted row at commit, under the row lock of the one-row `audit_chain_head`, so the chain
  follows commit order and the lock is held only between the chaining and the commit (taken last, it
  cannot deadlock with the business locks taken before it). Every writer - ORM, raw SQL, other services -
  is chained without knowing it. `audit_row_hash` is SHA-256 over the canonical text of a JSON array of
  the previous hash and the row's fields (jsonb's text form is canonical: key order and spacing fixed).
- The append-only guard now lets only the chaining trigger itself (trigger depth > 1) fill the three
  chain columns of a row not yet chained; a writer cannot pre-fill them (a BEFORE INSERT trigger blanks
  them), and UPDATE/DELETE/TRUNCATE stay refused for everyone else.
- Existing rows are chained in (created_at, id) order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | Sequence[str] | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_OLD = "roles <@ ARRAY['approver', 'ops', 'compliance', 'admin']::text[]"
ROLES_NEW = "roles <@ ARRAY['support', 'approver', 'ops', 'compliance', 'admin']::text[]"

ROW_HASH = """
CREATE FUNCTION audit_row_hash(
    p_prev text, p_seq bigint, p_id uuid, p_actor_id uuid, p_actor_type text, p_action text,
    p_target_type text, p_target_id text, p_details jsonb, p_ip text, p_created_at timestamptz
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(jsonb_build_array(
        p_prev, p_seq, p_id, p_actor_id, p_actor_type, p_action, p_target_type, p_target_id, p_details,
        p_ip, (extract(epoch FROM p_created_at) * 1000000)::bigint
    )::text, 'UTF8')), 'hex')
$$;
"""

CHAIN = """
CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r audit_log;
    v_last_seq bigint;
    v_last_hash text;
    v_hash text;
BEGIN
    SELECT * INTO r FROM audit_log WHERE id = NEW.id;
    IF NOT FOUND OR r.hash IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT last_seq, last_hash INTO v_last_seq, v_last_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE;
    v_hash := audit_row_hash(v_last_hash, v_last_seq + 1, r.id, r.actor_id, r.actor_type, r.action,
                             r.target_type, r.target_id, r.details, r.ip, r.created_at);
    UPDATE audit_log SET seq = v_last_seq + 1, prev_hash = v_last_hash, hash = v_hash WHERE id = r.id;
    UPDATE audit_chain_head SET last_seq = v_last_seq + 1, last_hash = v_hash WHERE id = 1;
    RETURN NULL;
END;
$$;
"""

BLANK_CHAIN = """
CREATE FUNCTION audit_log_blank_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := NULL;
    NEW.prev_hash := NULL;
    NEW.hash := NULL;
    RETURN NEW;
END;
$$;
"""

GUARD = """
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 AND OLD.hash IS NULL AND OLD.seq IS NULL
       AND (NEW.id, NEW.actor_id, NEW.actor_type, NEW.action, NEW.target_type, NEW.target_id, NEW.details,
            NEW.ip, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.actor_id, OLD.actor_type, OLD.action, OLD.target_type, OLD.target_id, OLD.details,
            OLD.ip, OLD.created_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

BACKFILL = """
DO $$
DECLARE
    r audit_log;
    v_seq bigint := 0;
    v_hash text := NULL;
    v_next text;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY created_at, id LOOP
        v_seq := v_seq + 1;
        v_next := audit_row_hash(v_hash, v_seq, r.id, r.actor_id, r.actor_type, r.action, r.target_type,
                                 r.target_id, r.details, r.ip, r.created_at);
        UPDATE audit_log SET seq = v_seq, prev_hash = v_hash, hash = v_next WHERE id = r.id;
        v_hash := v_next;
    END LOOP;
    INSERT INTO audit_chain_head (id, last_seq, last_hash) VALUES (1, v_seq, v_hash);
END;
$$;
"""


def upgrade() -> None:
    op.drop_constraint("ck_users_roles", "users", type_="check")
    op.create_check_constraint("ck_users_roles", "users", ROLES_NEW)

    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_staff_sessions_user", "staff_sessions", ["user_id"], unique=False)

    op.add_column("audit_log", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("hash", sa.String(length=64), nullable=True))
    op.create_index("ux_audit_log_seq", "audit_log", ["seq"], unique=True)
    op.create_index("ix_audit_log_action_created", "audit_log", ["action", "created_at"], unique=False)
    op.execute(
        "CREATE TABLE audit_chain_head (id integer PRIMARY KEY CHECK (id = 1), "
        "last_seq bigint NOT NULL, last_hash varchar(64))"
    )
    op.execute(ROW_HASH)
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute(BACKFILL)
    op.execute(GUARD)
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_guard()"
    )
    op.execute(BLANK_CHAIN)
    op.execute(
        "CREATE TRIGGER audit_log_blank_chain BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_blank_chain()"
    )
    op.execute(CHAIN)
    op.execute(
        "CREATE CONSTRAINT TRIGGER audit_log_chain AFTER INSERT ON audit_log "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_log_chain()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_chain ON audit_log")
    op.execute("DROP TRIGGER audit_log_blank_chain ON audit_log")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_chain()")
    op.execute("DROP FUNCTION audit_log_blank_chain()")
    op.execute("DROP FUNCTION audit_log_guard()")
    op.execute(
        "DROP FUNCTION audit_row_hash(text, bigint, uuid, uuid, text, text, text, text, jsonb, text, timestamptz)"
    )
    op.execute("DROP TABLE audit_chain_head")
    op.drop_index("ix_audit_log_action_created", table_name="audit_log")
    op.drop_index("ux_audit_log_seq", table_name="audit_log")
    op.drop_column("audit_log", "hash")
    op.drop_column("audit_log", "prev_hash")
    op.drop_column("audit_log", "seq")
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION reject_append_only_change()"
    )

    op.drop_index("ix_staff_sessions_user", table_name="staff_sessions")
    op.drop_table("staff_sessions")

    op.execute("UPDATE users SET roles = array_remove(roles, 'support') WHERE 'support' = ANY(roles)")
    op.drop_constraint("ck_users_roles", "users", type_="check")
    op.create_check_constraint("ck_users_roles", "users", ROLES_OLD)
