"""ledger post batch: postings applied set-based, one or many per statement

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

`ledger_post_batch(postings jsonb)` applies any number of independent postings with a handful of
statements, however many postings and legs: one INSERT of their journal transactions, one query that
finds, locks and reads every account they touch, one UPDATE of the accounts and one INSERT of the
entries (plus one UPDATE per leg paid from a hold); then one commit (one WAL flush) for the lot. `ledger_post` is now that function applied to
one posting, so there is a single implementation of the posting rules.

Why set-based: on PostgreSQL each statement has a fixed cost that dwarfs the work of one row (for
every UPDATE the executor re-reads the table's CHECK constraints), and the per-leg statements of the
0002 version were most of a posting's cost. The ledger's group commit (`services/ledger.py`) sends
the standalone postings that arrive together as one batch.

Locks: accounts are locked by one query in one global order (rows named by id, then house rows
named by code, each by id), and keys are inserted in key order, so batches never deadlock with each
other or with single postings. A batch is all or nothing: if any posting fails, nothing is written
and the client posts each alone to learn which one failed and why.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER_POST_BATCH = """
CREATE FUNCTION ledger_post_batch(p_postings jsonb)
RETURNS TABLE (idx int, transaction_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    v_count int := jsonb_array_length(p_postings);
    v_inserted text[];
    v_tx uuid[];       -- per posting: its journal transaction (the first one, for a replay)
    v_new boolean[];   -- per posting: applied by this call (false: a replay)
    v_conflict text;
    v_fewest_legs int;
    v_legs int;
    v_seen int := 0;
    v_leg record;
    v_hold record;
    v_account uuid;  -- the account whose running state the v_ variables below hold
    v_slot int := 0;  -- its position in the u_ arrays (the rows the final UPDATE writes)
    v_posting int;   -- the posting of the last leg applied to that account
    v_kind text;
    v_balance numeric;
    v_available numeric;
    v_reserved numeric;
    v_released numeric;  -- what closing a posting's holds returns to available, after its legs
    v_seq bigint;
    v_last_hash text;
    v_rest numeric;
    v_entry uuid;
    v_hash text;
    v_missing text;
    e_ids uuid[] := '{}';
    e_txs uuid[] := '{}';
    e_accounts uuid[] := '{}';
    e_seqs bigint[] := '{}';
    e_currencies text[] := '{}';
    e_amounts numeric[] := '{}';
    e_balances numeric[] := '{}';
    e_ref_types text[] := '{}';
    e_ref_ids uuid[] := '{}';
    e_creators uuid[] := '{}';
    e_prev text[] := '{}';
    e_hashes text[] := '{}';
    u_ids uuid[] := '{}';
    u_balances numeric[] := '{}';
    u_availables numeric[] := '{}';
    u_reserveds numeric[] := '{}';
    u_seqs bigint[] := '{}';
    u_hashes text[] := '{}';
BEGIN
    -- 1. The journal transactions. A key that exists already is a replay (or, with another request,
    --    a conflict); inserted in key order so concurrent batches never wait on each other in a cycle.
    WITH ins AS (
        INSERT INTO ledger_transactions AS t (id, idempotency_key, request_hash, kind, reference_type,
                                              reference_id, created_by, metadata, created_at)
        SELECT (e.p->>'tx')::uuid, e.p->>'key', e.p->>'hash', e.p->>'kind', e.p->>'rt', (e.p->>'rid')::uuid,
               (e.p->>'by')::uuid, coalesce(e.p->'meta', '{}'::jsonb), v_now
          FROM jsonb_array_elements(p_postings) AS e(p)
         ORDER BY e.p->>'key'
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING t.idempotency_key
    )
    SELECT coalesce(array_agg(ins.idempotency_key), '{}') INTO v_inserted FROM ins;

    SELECT array_agg(x.id ORDER BY x.n), array_agg(x.is_new ORDER BY x.n),
           min(x.key) FILTER (WHERE x.conflict),
           min(x.legs) FILTER (WHERE x.is_new), coalesce(sum(x.legs) FILTER (WHERE x.is_new), 0)
      INTO v_tx, v_new, v_conflict, v_fewest_legs, v_legs
      FROM (SELECT e.n, t.id, e.p->>'key' AS key, t.request_hash <> e.p->>'hash' AS conflict,
                   jsonb_array_length(e.p->'legs') AS legs,
                   -- the same key twice in one batch: the first applies, the second is its replay
                   (e.p->>'key') = ANY(v_inserted) AND e.n = min(e.n) OVER (PARTITION BY e.p->>'key') AS is_new
              FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS e(p, n)
             -- OFFSET 0 keeps this a per-posting index probe: as a join, the planner's guess of 100
             -- postings would pick a scan of the whole journal.
             CROSS JOIN LATERAL (SELECT t.id, t.request_hash FROM ledger_transactions t
                                  WHERE t.idempotency_key = e.p->>'key' OFFSET 0) t) x;
    IF v_conflict IS NOT NULL THEN
        RAISE EXCEPTION 'idempotency key % was already used for a different posting', v_conflict
            USING ERRCODE = 'LG003';
    END IF;
    IF v_fewest_legs < 2 THEN
        RAISE EXCEPTION 'a posting needs at least two legs' USING ERRCODE = 'LG004';
    END IF;
    -- Zero-sum per transaction and currency is checked by the ledger_entries_balanced trigger when
    -- the entries are inserted (LG004), not by a query of its own here.

    -- 2. One statement finds, locks and reads every account of the new postings; the loop below only
    --    computes. A house leg names its account by code and shard count, and the shard is this
    --    backend's (pid modulo shards), so concurrent sessions mostly touch different rows of a hot
    --    house account. Rows named by id (customers) are locked before house rows, each in id order:
    --    one global lock order, so postings never deadlock. The LATERAL subquery locks each row as the
    --    nested loop meets it, i.e. in the order of `l` (sorted, materialized), and every lookup is
    --    an index probe whatever the planner guesses about the legs.
    FOR v_leg IN
        WITH l AS MATERIALIZED (
            SELECT (e.n - 1)::int AS i, j.ord, j.leg->>'currency' AS currency,
                   (j.leg->>'amount')::numeric AS amount, (j.leg->>'hold_id')::uuid AS hold_id,
                   j.leg ? 'house' AS by_code,
                   coalesce((j.leg->>'account_id')::uuid,
                            (SELECT h.id FROM accounts h
                              WHERE h.kind = 'house' AND h.code = j.leg->>'house'
                                AND h.currency = j.leg->>'currency'
                                AND h.shard = pg_backend_pid() % greatest((j.leg->>'shards')::int, 1)))
                       AS account_id,
                   (SELECT c.scale FROM currencies c WHERE c.code = j.leg->>'currency') AS scale,
                   coalesce((e.p->>'close')::boolean, true)
                       AND j.ord = max(j.ord) OVER (PARTITION BY e.n, j.leg->>'hold_id') AS closes_hold,
                   e.p->>'rt' AS ref_type, (e.p->>'rid')::uuid AS ref_id, (e.p->>'by')::uuid AS created_by
              FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS e(p, n)
             CROSS JOIN jsonb_array_elements(e.p->'legs') WITH ORDINALITY AS j(leg, ord)
             WHERE v_new[e.n]
             ORDER BY 6, 7, 1, 2
        )
        SELECT l.*, a.kind, a.currency AS account_currency, a.balance, a.available_balance,
               a.reserved_balance, a.entry_seq, a.last_hash
          FROM l
         CROSS JOIN LATERAL (SELECT * FROM accounts a WHERE a.id = l.account_id FOR UPDATE) a
         ORDER BY l.by_code, l.account_id, l.i, l.ord
    LOOP
        v_seen := v_seen + 1;
        IF v_leg.amount IS NULL OR v_leg.amount = 0 THEN
            RAISE EXCEPTION 'leg amount must be non-zero' USING ERRCODE = 'LG008';
        END IF;
        IF v_leg.scale IS NULL THEN
            RAISE EXCEPTION 'unknown currency %', v_leg.currency USING ERRCODE = 'LG006';
        END IF;
        IF v_leg.amount <> round(v_leg.amount, v_leg.scale) THEN
            RAISE EXCEPTION '% % is finer than % decimal places', v_leg.amount, v_leg.currency, v_leg.scale
                USING ERRCODE = 'LG007';
        END IF;
        IF v_leg.account_currency <> v_leg.currency THEN
            RAISE EXCEPTION 'account % holds %, not %', v_leg.account_id, v_leg.account_currency,
                v_leg.currency USING ERRCODE = 'LG006';
        END IF;

        IF v_account IS DISTINCT FROM v_leg.account_id THEN  -- the first leg on this account
            v_slot := v_slot + 1;
            u_ids[v_slot] := v_leg.account_id;
            v_account := v_leg.account_id;
            v_kind := v_leg.kind;
            v_balance := v_leg.balance;
            v_available := v_leg.available_balance;
            v_reserved := v_leg.reserved_balance;
            v_released := 0;
            v_seq := v_leg.entry_seq;
            v_last_hash := v_leg.last_hash;
        ELSIF v_posting <> v_leg.i THEN  -- a later posting on the same account
            v_available := v_available + v_released;
            v_reserved := v_reserved - v_released;
            v_released := 0;
        END IF;
        v_posting := v_leg.i;

        IF v_leg.hold_id IS NOT NULL THEN
            IF v_leg.amount > 0 THEN
                RAISE EXCEPTION 'a leg paid from a hold must be a debit' USING ERRCODE = 'LG008';
            END IF;
            -- Committing a hold (at its posting's last leg on it) returns what it did not consume.
            UPDATE holds h
               SET consumed = h.consumed - v_leg.amount,
                   status = CASE WHEN v_leg.closes_hold THEN 'committed' ELSE h.status END,
                   closed_at = CASE WHEN v_leg.closes_hold THEN v_now ELSE h.closed_at END
             WHERE h.id = v_leg.hold_id AND h.status = 'active' AND h.account_id = v_leg.account_id
               AND h.consumed - v_leg.amount <= h.amount
            RETURNING h.amount - h.consumed INTO v_rest;
            IF NOT FOUND THEN
                SELECT h.* INTO v_hold FROM holds h WHERE h.id = v_leg.hold_id;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'unknown hold %', v_leg.hold_id USING ERRCODE = 'LG005';
                ELSIF v_hold.status <> 'active' THEN
                    RAISE EXCEPTION 'hold % is %', v_hold.id, v_hold.status USING ERRCODE = 'LG002';
                ELSIF v_hold.account_id <> v_leg.account_id THEN
                    RAISE EXCEPTION 'hold % belongs to another account', v_hold.id USING ERRCODE = 'LG006';
                END IF;
                RAISE EXCEPTION 'debit exceeds what hold % has left', v_hold.id USING ERRCODE = 'LG001';
            END IF;
            v_reserved := v_reserved + v_leg.amount;
            IF v_leg.closes_hold THEN
                v_released := v_released + v_rest;
            END IF;
        ELSE
            v_available := v_available + v_leg.amount;
            IF v_kind = 'customer' AND v_available < 0 THEN
                RAISE EXCEPTION 'insufficient funds in account %', v_leg.account_id USING ERRCODE = 'LG001';
            END IF;
        END IF;
        v_balance := v_balance + v_leg.amount;
        v_seq := v_seq + 1;
        v_entry := gen_random_uuid();
        v_hash := ledger_entry_hash(v_last_hash, v_entry, v_tx[v_leg.i + 1], v_leg.account_id, v_seq,
                                    v_leg.currency, v_leg.amount, v_balance, v_leg.ref_type, v_leg.ref_id,
                                    v_now);
        e_ids := e_ids || v_entry;
        e_txs := e_txs || v_tx[v_leg.i + 1];
        e_accounts := e_accounts || v_leg.account_id;
        e_seqs := e_seqs || v_seq;
        e_currencies := e_currencies || v_leg.currency;
        e_amounts := e_amounts || v_leg.amount;
        e_balances := e_balances || v_balance;
        e_ref_types := e_ref_types || v_leg.ref_type;
        e_ref_ids := e_ref_ids || v_leg.ref_id;
        e_creators := e_creators || v_leg.created_by;
        e_prev := e_prev || v_last_hash;
        e_hashes := e_hashes || v_hash;
        v_last_hash := v_hash;
        -- The account's row as it stands after this leg (its holds' remainders released).
        u_balances[v_slot] := v_balance;
        u_availables[v_slot] := v_available + v_released;
        u_reserveds[v_slot] := v_reserved - v_released;
        u_seqs[v_slot] := v_seq;
        u_hashes[v_slot] := v_last_hash;
    END LOOP;

    IF v_seen < v_legs THEN  -- a leg joined no account
        SELECT coalesce(j.leg->>'account_id', j.leg->>'house') INTO v_missing
          FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS e(p, n)
         CROSS JOIN jsonb_array_elements(e.p->'legs') AS j(leg)
         WHERE v_new[e.n]
           AND NOT EXISTS (
                SELECT 1 FROM accounts a
                 WHERE a.id = (j.leg->>'account_id')::uuid
                    OR (a.kind = 'house' AND a.code = j.leg->>'house' AND a.currency = j.leg->>'currency'
                        AND a.shard = pg_backend_pid() % greatest((j.leg->>'shards')::int, 1)))
         LIMIT 1;
        RAISE EXCEPTION 'unknown account %', v_missing USING ERRCODE = 'LG005';
    END IF;

    IF v_slot > 0 THEN
        -- 3. Every account written by one UPDATE, every entry by one INSERT.
        UPDATE accounts a
           SET balance = u.balance, available_balance = u.available, reserved_balance = u.reserved,
               entry_seq = u.seq, last_hash = u.hash, updated_at = v_now
          FROM unnest(u_ids, u_balances, u_availables, u_reserveds, u_seqs, u_hashes)
               AS u(id, balance, available, reserved, seq, hash)
         WHERE a.id = u.id;
        INSERT INTO ledger_entries (id, transaction_id, account_id, seq, currency, amount, balance_after,
                                    reference_type, reference_id, created_at, created_by, prev_hash, hash)
        SELECT e.id, e.tx, e.account_id, e.seq, e.currency, e.amount, e.balance_after,
               e.ref_type, e.ref_id, v_now, e.created_by, e.prev_hash, e.hash
          FROM unnest(e_ids, e_txs, e_accounts, e_seqs, e_currencies, e_amounts, e_balances, e_ref_types,
                      e_ref_ids, e_creators, e_prev, e_hashes)
               AS e(id, tx, account_id, seq, currency, amount, balance_after, ref_type, ref_id, created_by,
                    prev_hash, hash);
    END IF;

    RETURN QUERY SELECT (n - 1)::int, v_tx[n], NOT v_new[n] FROM generate_series(1, v_count) AS n;
END $$;
"""

LEDGER_POST = """
CREATE OR REPLACE FUNCTION ledger_post(
    p_tx_id uuid, p_key text, p_request_hash text, p_kind text, p_ref_type text, p_ref_id uuid,
    p_created_by uuid, p_metadata jsonb, p_legs jsonb, p_close_holds boolean
) RETURNS TABLE (transaction_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
BEGIN
    -- One posting is a batch of one: a single implementation of the posting rules.
    RETURN QUERY
        SELECT b.transaction_id, b.replayed
          FROM ledger_post_batch(jsonb_build_array(jsonb_build_object(
                'tx', p_tx_id, 'key', p_key, 'hash', p_request_hash, 'kind', p_kind, 'rt', p_ref_type,
                'rid', p_ref_id, 'by', p_created_by, 'meta', p_metadata, 'legs', p_legs,
                'close', p_close_holds))) b;
END $$;
"""


def _ledger_post_of_0002() -> str:
    """The previous definition, from migration 0002 (its module cannot be imported by name)."""
    path = Path(__file__).with_name("0002_ledger_journal_holds_hash_chain.py")
    spec = importlib.util.spec_from_file_location("_ledger_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (body,) = [f for f in module.LEDGER_FUNCTIONS if "CREATE FUNCTION ledger_post(" in f]
    return str(body).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(LEDGER_POST_BATCH)
    op.execute(LEDGER_POST)
    # Entries of a reference are found through ledger_transactions (indexed by reference) and
    # ix_ledger_entries_transaction_id; a second reference index cost every leg an index insert.
    op.drop_index("ix_ledger_entries_reference", table_name="ledger_entries")


def downgrade() -> None:
    op.create_index(
        "ix_ledger_entries_reference", "ledger_entries", ["reference_type", "reference_id"], unique=False
    )
    op.execute("DROP FUNCTION IF EXISTS ledger_post_batch(jsonb)")
    op.execute(_ledger_post_of_0002())
