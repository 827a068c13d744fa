"""ledger journal holds hash chain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

The ledger proper (issue 3): journal transactions (the unit of idempotency), holds, per-account
sequence numbers and a hash chain on entries, sharded house accounts, the currency table with scales,
and the posting functions. The database enforces double entry itself: a statement-level trigger refuses
any INSERT whose entries do not sum to zero per journal transaction and currency.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Error codes raised by the functions (mapped to typed errors in services/ledger.py):
# LG001 insufficient funds, LG002 hold not active, LG003 idempotency key reused for another request,
# LG004 unbalanced, LG005 unknown account or hold, LG006 currency mismatch, LG007 finer than scale,
# LG008 invalid amount.

LEDGER_FUNCTION_NAMES = (
    "ledger_check_balanced()",
    "ledger_entry_hash(text, uuid, uuid, uuid, bigint, text, numeric, numeric, text, uuid, timestamptz)",
    "ledger_post(uuid, text, text, text, text, uuid, uuid, jsonb, jsonb, boolean)",
    "ledger_reserve(uuid, text, uuid, text, numeric, text, uuid)",
    "ledger_release(uuid)",
)

LEDGER_FUNCTIONS = (
    """
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement-level, over the rows this INSERT added: each statement must leave every journal
    -- transaction it touches balanced per currency (ledger_post writes all legs in one INSERT).
    -- One check per posting instead of one queued event per row.
    IF EXISTS (SELECT 1 FROM new_entries n GROUP BY n.transaction_id, n.currency HAVING sum(n.amount) <> 0) THEN
        RAISE EXCEPTION 'ledger entries inserted by one statement do not sum to zero per currency and transaction'
            USING ERRCODE = 'LG004';
    END IF;
    RETURN NULL;
END $$;
""",
    """
CREATE FUNCTION ledger_entry_hash(
    p_prev text, p_id uuid, p_tx uuid, p_account uuid, p_seq bigint, p_currency text,
    p_amount numeric, p_balance_after numeric, p_ref_type text, p_ref_id uuid, p_created_at timestamptz
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|',
        coalesce(p_prev, ''), p_id::text, p_tx::text, p_account::text, p_seq::text, p_currency,
        (p_amount::numeric(36, 18))::text, (p_balance_after::numeric(36, 18))::text,
        p_ref_type, p_ref_id::text,
        to_char(p_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')), 'UTF8')), 'hex')
$$;
""",
    """
CREATE FUNCTION ledger_post(
    p_tx_id uuid, p_key text, p_request_hash text, p_kind text, p_ref_type text, p_ref_id uuid,
    p_created_by uuid, p_metadata jsonb, p_legs jsonb, p_close_holds boolean
) RETURNS TABLE (transaction_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    v_existing_id uuid;
    v_existing_hash text;
    v_leg record;
    v_acc record;
    v_hold record;
    v_scale int;
    v_entry uuid;
    v_seq bigint;
    v_balance numeric;
    v_available numeric;
    v_reserved numeric;
    v_hash text;
    e_ids uuid[] := '{}';
    e_accounts uuid[] := '{}';
    e_seqs bigint[] := '{}';
    e_currencies text[] := '{}';
    e_amounts numeric[] := '{}';
    e_balances numeric[] := '{}';
    e_prev text[] := '{}';
    e_hashes text[] := '{}';
BEGIN
    INSERT INTO ledger_transactions AS t (id, idempotency_key, request_hash, kind, reference_type,
                                          reference_id, created_by, metadata, created_at)
    VALUES (p_tx_id, p_key, p_request_hash, p_kind, p_ref_type, p_ref_id, p_created_by, p_metadata, v_now)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT t.id, t.request_hash INTO v_existing_id, v_existing_hash
          FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        IF v_existing_hash <> p_request_hash THEN
            RAISE EXCEPTION 'idempotency key % was already used for a different posting', p_key
                USING ERRCODE = 'LG003';
        END IF;
        RETURN QUERY SELECT v_existing_id, true;
        RETURN;
    END IF;

    IF jsonb_array_length(p_legs) < 2 THEN
        RAISE EXCEPTION 'a posting needs at least two legs' USING ERRCODE = 'LG004';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_to_recordset(p_legs) AS l(currency text, amount numeric)
               GROUP BY l.currency HAVING sum(l.amount) <> 0) THEN
        RAISE EXCEPTION 'posting % does not sum to zero per currency', p_key USING ERRCODE = 'LG004';
    END IF;

    -- A house leg names its account by code and shard count; the shard is this backend's
    -- (pid modulo shards), so concurrent sessions mostly touch different rows of a hot house account.
    -- Customer rows are locked first, then house rows, each in id order: one global lock order means
    -- postings never deadlock, and the shared house rows are held for the shortest time.
    FOR v_leg IN
        SELECT coalesce(l.account_id, h.id) AS account_id, l.house, l.currency, l.amount, l.hold_id
          FROM jsonb_to_recordset(p_legs)
               AS l(account_id uuid, house text, shards int, currency text, amount numeric, hold_id uuid)
          LEFT JOIN accounts h
                 ON l.house IS NOT NULL AND h.kind = 'house' AND h.code = l.house
                AND h.currency = l.currency AND h.shard = pg_backend_pid() % greatest(l.shards, 1)
         ORDER BY (l.house IS NOT NULL), coalesce(l.account_id, h.id)
    LOOP
        IF v_leg.amount IS NULL OR v_leg.amount = 0 THEN
            RAISE EXCEPTION 'leg amount must be non-zero' USING ERRCODE = 'LG008';
        END IF;
        SELECT c.scale INTO v_scale FROM currencies c WHERE c.code = v_leg.currency;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown currency %', v_leg.currency USING ERRCODE = 'LG006';
        END IF;
        IF v_leg.amount <> round(v_leg.amount, v_scale) THEN
            RAISE EXCEPTION '% % is finer than % decimal places', v_leg.amount, v_leg.currency, v_scale
                USING ERRCODE = 'LG007';
        END IF;
        SELECT a.* INTO v_acc FROM accounts a WHERE a.id = v_leg.account_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown account %', coalesce(v_leg.account_id::text, v_leg.house)
                USING ERRCODE = 'LG005';
        END IF;
        IF v_acc.currency <> v_leg.currency THEN
            RAISE EXCEPTION 'account % holds %, not %', v_acc.id, v_acc.currency, v_leg.currency
                USING ERRCODE = 'LG006';
        END IF;

        v_available := v_acc.available_balance;
        v_reserved := v_acc.reserved_balance;
        IF v_leg.hold_id IS NOT NULL THEN
            IF v_leg.amount > 0 THEN
                RAISE EXCEPTION 'a leg paid from a hold must be a debit' USING ERRCODE = 'LG008';
            END IF;
            UPDATE holds h SET consumed = h.consumed - v_leg.amount
             WHERE h.id = v_leg.hold_id AND h.status = 'active' AND h.account_id = v_acc.id
               AND h.consumed - v_leg.amount <= h.amount;
            IF NOT FOUND THEN
                SELECT h.* INTO v_hold FROM holds h WHERE h.id = v_leg.hold_id;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'unknown hold %', v_leg.hold_id USING ERRCODE = 'LG005';
                ELSIF v_hold.status <> 'active' THEN
                    RAISE EXCEPTION 'hold % is %', v_hold.id, v_hold.status USING ERRCODE = 'LG002';
                ELSIF v_hold.account_id <> v_acc.id THEN
                    RAISE EXCEPTION 'hold % belongs to another account', v_hold.id USING ERRCODE = 'LG006';
                END IF;
                RAISE EXCEPTION 'debit exceeds what hold % has left', v_hold.id USING ERRCODE = 'LG001';
            END IF;
            v_reserved := v_reserved + v_leg.amount;
        ELSE
            v_available := v_available + v_leg.amount;
            IF v_acc.kind = 'customer' AND v_available < 0 THEN
                RAISE EXCEPTION 'insufficient funds in account %', v_acc.id USING ERRCODE = 'LG001';
            END IF;
        END IF;
        v_balance := v_acc.balance + v_leg.amount;
        v_seq := v_acc.entry_seq + 1;
        v_entry := gen_random_uuid();
        v_hash := ledger_entry_hash(v_acc.last_hash, v_entry, p_tx_id, v_acc.id, v_seq, v_leg.currency,
                                    v_leg.amount, v_balance, p_ref_type, p_ref_id, v_now);
        UPDATE accounts
           SET balance = v_balance, available_balance = v_available, reserved_balance = v_reserved,
               entry_seq = v_seq, last_hash = v_hash, updated_at = v_now
         WHERE id = v_acc.id;
        -- Entries are written in one INSERT after the loop: one executor run instead of one per leg.
        e_ids := e_ids || v_entry;
        e_accounts := e_accounts || v_acc.id;
        e_seqs := e_seqs || v_seq;
        e_currencies := e_currencies || v_leg.currency;
        e_amounts := e_amounts || v_leg.amount;
        e_balances := e_balances || v_balance;
        e_prev := e_prev || v_acc.last_hash;
        e_hashes := e_hashes || v_hash;
    END LOOP;
    INSERT INTO ledger_entries (id, transaction_id, account_id, seq, currency, amount, balance_after,
                                reference_type, reference_id, created_at, created_by, prev_hash, hash)
    SELECT e.id, p_tx_id, e.account_id, e.seq, e.currency, e.amount, e.balance_after,
           p_ref_type, p_ref_id, v_now, p_created_by, e.prev_hash, e.hash
      FROM unnest(e_ids, e_accounts, e_seqs, e_currencies, e_amounts, e_balances, e_prev, e_hashes)
           AS e(id, account_id, seq, currency, amount, balance_after, prev_hash, hash);

    IF p_close_holds THEN
        -- Committing a hold returns whatever it did not consume to available.
        FOR v_hold IN
            SELECT h.* FROM holds h
             WHERE h.id IN (SELECT DISTINCT l.hold_id FROM jsonb_to_recordset(p_legs) AS l(hold_id uuid)
                             WHERE l.hold_id IS NOT NULL)
             ORDER BY h.id
        LOOP
            UPDATE accounts
               SET available_balance = available_balance + (v_hold.amount - v_hold.consumed),
                   reserved_balance = reserved_balance - (v_hold.amount - v_hold.consumed),
                   updated_at = v_now
             WHERE id = v_hold.account_id;
            UPDATE holds SET status = 'committed', closed_at = v_now WHERE id = v_hold.id;
        END LOOP;
    END IF;
    RETURN QUERY SELECT p_tx_id, false;
END $$;
""",
    """
CREATE FUNCTION ledger_reserve(
    p_hold_id uuid, p_key text, p_account uuid, p_currency text, p_amount numeric,
    p_ref_type text, p_ref_id uuid
) RETURNS TABLE (hold_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_existing record;
    v_currency text;
    v_scale int;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'a hold must be positive' USING ERRCODE = 'LG008';
    END IF;
    SELECT a.currency INTO v_currency FROM accounts a WHERE a.id = p_account;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown account %', p_account USING ERRCODE = 'LG005';
    END IF;
    IF v_currency <> p_currency THEN
        RAISE EXCEPTION 'account % holds %, not %', p_account, v_currency, p_currency USING ERRCODE = 'LG006';
    END IF;
    SELECT c.scale INTO v_scale FROM currencies c WHERE c.code = p_currency;
    IF p_amount <> round(p_amount, v_scale) THEN
        RAISE EXCEPTION '% % is finer than % decimal places', p_amount, p_currency, v_scale
            USING ERRCODE = 'LG007';
    END IF;

    INSERT INTO holds AS h (id, idempotency_key, account_id, currency, amount, reference_type, reference_id)
    VALUES (p_hold_id, p_key, p_account, p_currency, p_amount, p_ref_type, p_ref_id)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT h.* INTO v_existing FROM holds h WHERE h.idempotency_key = p_key;
        IF v_existing.account_id <> p_account OR v_existing.amount <> p_amount THEN
            RAISE EXCEPTION 'idempotency key % was already used for a different hold', p_key
                USING ERRCODE = 'LG003';
        END IF;
        RETURN QUERY SELECT v_existing.id, true;
        RETURN;
    END IF;

    -- The check and the reservation are one statement: concurrent holds can never overspend.
    UPDATE accounts a
       SET available_balance = a.available_balance - p_amount,
           reserved_balance = a.reserved_balance + p_amount,
           updated_at = now()
     WHERE a.id = p_account AND (a.kind = 'house' OR a.available_balance >= p_amount);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insufficient funds in account % for a hold of %', p_account, p_amount
            USING ERRCODE = 'LG001';
    END IF;
    RETURN QUERY SELECT p_hold_id, false;
END $$;
""",
    """
CREATE FUNCTION ledger_release(p_hold_id uuid) RETURNS TABLE (status text, replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_account uuid;
    v_remaining numeric;
    v_status text;
BEGIN
    UPDATE holds h SET status = 'released', closed_at = now()
     WHERE h.id = p_hold_id AND h.status = 'active'
    RETURNING h.account_id, h.amount - h.consumed INTO v_account, v_remaining;
    IF NOT FOUND THEN
        SELECT h.status INTO v_status FROM holds h WHERE h.id = p_hold_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown hold %', p_hold_id USING ERRCODE = 'LG005';
        END IF;
        IF v_status = 'released' THEN
            RETURN QUERY SELECT 'released'::text, true;
            RETURN;
        END IF;
        RAISE EXCEPTION 'hold % is %', p_hold_id, v_status USING ERRCODE = 'LG002';
    END IF;
    UPDATE accounts a
       SET available_balance = a.available_balance + v_remaining,
           reserved_balance = a.reserved_balance - v_remaining,
           updated_at = now()
     WHERE a.id = v_account;
    RETURN QUERY SELECT 'released'::text, false;
END $$;
""",
)


def upgrade() -> None:
    op.create_table(
        "currencies",
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("scale", sa.Integer(), nullable=False),
        sa.CheckConstraint("scale BETWEEN 0 AND 18", name="ck_currencies_scale"),
        sa.PrimaryKeyConstraint("code"),
    )
    op.execute("INSERT INTO currencies (code, scale) VALUES ('GBP', 2), ('BTC', 8), ('ETH', 8), ('BNB', 8)")
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("reference_type", sa.String(length=50), nullable=False),
        sa.Column("reference_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index(
        "ix_ledger_transactions_reference",
        "ledger_transactions",
        ["reference_type", "reference_id"],
        unique=False,
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("consumed", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=10), server_default="active", nullable=False),
        sa.Column("reference_type", sa.String(length=50), nullable=False),
        sa.Column("reference_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active', 'committed', 'released')", name="ck_holds_status"),
        sa.CheckConstraint("amount > 0 AND consumed >= 0 AND consumed <= amount", name="ck_holds_amounts"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index(op.f("ix_holds_account_id"), "holds", ["account_id"], unique=False)
    op.create_index("ix_holds_reference", "holds", ["reference_type", "reference_id"], unique=False)
    op.add_column("accounts", sa.Column("shard", sa.Integer(), server_default="0", nullable=False))
    op.add_column("accounts", sa.Column("entry_seq", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("accounts", sa.Column("last_hash", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_accounts_house_code_currency_shard",
        "accounts",
        ["code", "currency", "shard"],
        unique=True,
        postgresql_where=sa.text("kind = 'house'"),
    )
    op.create_foreign_key("fk_accounts_currency", "accounts", "currencies", ["currency"], ["code"])
    op.add_column("ledger_entries", sa.Column("transaction_id", sa.Uuid(), nullable=False))
    op.add_column("ledger_entries", sa.Column("seq", sa.BigInteger(), nullable=False))
    op.add_column("ledger_entries", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("ledger_entries", sa.Column("hash", sa.String(length=64), nullable=False))
    op.create_index(
        op.f("ix_ledger_entries_transaction_id"), "ledger_entries", ["transaction_id"], unique=False
    )
    op.create_unique_constraint("uq_ledger_entries_account_seq", "ledger_entries", ["account_id", "seq"])
    op.create_foreign_key(
        "fk_ledger_entries_transaction", "ledger_entries", "ledger_transactions", ["transaction_id"], ["id"]
    )

    op.create_check_constraint("ck_accounts_customer_unsharded", "accounts", "kind = 'house' OR shard = 0")
    op.create_check_constraint("ck_ledger_entries_nonzero", "ledger_entries", "amount <> 0")
    op.execute(
        "CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions "
        "FOR EACH ROW EXECUTE FUNCTION reject_append_only_change()"
    )
    for sql in LEDGER_FUNCTIONS:
        op.execute(sql)
    op.execute(
        "CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
        "REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_balanced()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries")
    op.execute("DROP TRIGGER IF EXISTS ledger_transactions_append_only ON ledger_transactions")
    for name in LEDGER_FUNCTION_NAMES:
        op.execute(f"DROP FUNCTION IF EXISTS {name} CASCADE")
    op.drop_constraint("ck_ledger_entries_nonzero", "ledger_entries", type_="check")
    op.drop_constraint("ck_accounts_customer_unsharded", "accounts", type_="check")
    op.drop_constraint("fk_ledger_entries_transaction", "ledger_entries", type_="foreignkey")
    op.drop_constraint("uq_ledger_entries_account_seq", "ledger_entries", type_="unique")
    op.drop_index(op.f("ix_ledger_entries_transaction_id"), table_name="ledger_entries")
    op.drop_column("ledger_entries", "hash")
    op.drop_column("ledger_entries", "prev_hash")
    op.drop_column("ledger_entries", "seq")
    op.drop_column("ledger_entries", "transaction_id")
    op.drop_constraint("fk_accounts_currency", "accounts", type_="foreignkey")
    op.drop_index(
        "uq_accounts_house_code_currency_shard",
        table_name="accounts",
        postgresql_where=sa.text("kind = 'house'"),
    )
    op.drop_column("accounts", "last_hash")
    op.drop_column("accounts", "entry_seq")
    op.drop_column("accounts", "shard")
    op.drop_index("ix_holds_reference", table_name="holds")
    op.drop_index(op.f("ix_holds_account_id"), table_name="holds")
    op.drop_table("holds")
    op.drop_index("ix_ledger_transactions_reference", table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
    op.drop_table("currencies")
