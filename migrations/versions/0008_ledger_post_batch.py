"""ledger post batch (group commit)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

`ledger_post_batch` applies several independent postings in one database transaction: one round
trip and one commit (one WAL flush) for the lot instead of one each. The ledger's group commit
(`services/ledger.py`) sends the standalone postings that arrive while an earlier batch is in flight.

Each posting is still one `ledger_post` call with all its checks and its idempotency key. Before any
of them runs, every account the batch touches is locked in the global order that `ledger_post` uses
(customer rows, then house rows, each by id), so two batches can never deadlock on each other or on
single postings. The batch is all or nothing: if any posting fails, nothing is written and the
client posts each of them alone to learn which one failed and why.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER_POST = """
CREATE OR REPLACE FUNCTION ledger_post(
    p_tx_id uuid, p_key text, p_request_hash text, p_kind text, p_ref_type text, p_ref_id uuid,
    p_created_by uuid, p_metadata jsonb, p_legs jsonb, p_close_holds boolean
) RETURNS TABLE (transaction_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    v_existing_id uuid;
    v_existing_hash text;
    v_leg record;
    v_hold record;
    v_legs int := jsonb_array_length(p_legs);
    v_seen int := 0;
    v_account uuid;  -- the account whose running state the v_ variables below hold
    v_kind text;
    v_balance numeric;
    v_available numeric;
    v_reserved numeric;
    v_released numeric;  -- what closing its holds returns to available, applied after all its legs
    v_seq bigint;
    v_last_hash text;
    v_rest numeric;
    v_entry uuid;
    v_hash text;
    e_ids uuid[] := '{}';
    e_accounts uuid[] := '{}';
    e_seqs bigint[] := '{}';
    e_currencies text[] := '{}';
    e_amounts numeric[] := '{}';
    e_balances numeric[] := '{}';
    e_prev text[] := '{}';
    e_hashes text[] := '{}';
    u_ids uuid[] := '{}';
    u_balances numeric[] := '{}';
    u_availables numeric[] := '{}';
    u_reserveds numeric[] := '{}';
    u_seqs bigint[] := '{}';
    u_hashes text[] := '{}';
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

    IF v_legs < 2 THEN
        RAISE EXCEPTION 'a posting needs at least two legs' USING ERRCODE = 'LG004';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_to_recordset(p_legs) AS l(currency text, amount numeric)
               GROUP BY l.currency HAVING sum(l.amount) <> 0) THEN
        RAISE EXCEPTION 'posting % does not sum to zero per currency', p_key USING ERRCODE = 'LG004';
    END IF;

    -- One statement finds, locks and reads every account of the posting. Every statement costs
    -- (the executor re-reads the accounts table's CHECK constraints for each UPDATE), so the loop
    -- below only computes; the accounts are written by one UPDATE and the entries by one INSERT.
    -- A house leg names its account by code and shard count; the shard is this backend's
    -- (pid modulo shards), so concurrent sessions mostly touch different rows of a hot house account.
    -- Customer rows are locked first, then house rows, each in id order: one global lock order means
    -- postings never deadlock, and the shared house rows are held for the shortest time. The rows are
    -- locked by the LATERAL subquery as the nested loop meets them, so in the order of `l` (sorted
    -- and materialized); every lookup is an index probe whatever the planner thinks of the legs.
    FOR v_leg IN
        WITH l AS MATERIALIZED (
            SELECT j.ord, j.leg->>'currency' AS currency, (j.leg->>'amount')::numeric AS amount,
                   (j.leg->>'hold_id')::uuid AS hold_id, j.leg ? 'house' AS by_code,
                   coalesce((j.leg->>'account_id')::uuid,
                            (SELECT h.id FROM accounts h
                              WHERE h.kind = 'house' AND h.code = j.leg->>'house'
                                AND h.currency = j.leg->>'currency'
                                AND h.shard = pg_backend_pid() % greatest((j.leg->>'shards')::int, 1)))
                       AS account_id,
                   (SELECT c.scale FROM currencies c WHERE c.code = j.leg->>'currency') AS scale,
                   j.ord = max(j.ord) OVER (PARTITION BY j.leg->>'hold_id') AS hold_last
              FROM jsonb_array_elements(p_legs) WITH ORDINALITY AS j(leg, ord)
             ORDER BY 5, 6, 1
        )
        SELECT l.currency, l.amount, l.hold_id, l.hold_last, l.scale, a.id, a.kind,
               a.currency AS account_currency, a.balance, a.available_balance, a.reserved_balance,
               a.entry_seq, a.last_hash
          FROM l
         CROSS JOIN LATERAL (SELECT * FROM accounts a WHERE a.id = l.account_id FOR UPDATE) a
         ORDER BY l.by_code, l.account_id, l.ord
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
            RAISE EXCEPTION 'account % holds %, not %', v_leg.id, v_leg.account_currency, v_leg.currency
                USING ERRCODE = 'LG006';
        END IF;

        IF v_account IS DISTINCT FROM v_leg.id THEN  -- the first leg of this account
            IF v_account IS NOT NULL THEN
                u_ids := u_ids || v_account;
                u_balances := u_balances || v_balance;
                u_availables := u_availables || (v_available + v_released);
                u_reserveds := u_reserveds || (v_reserved - v_released);
                u_seqs := u_seqs || v_seq;
                u_hashes := u_hashes || v_last_hash;
            END IF;
            v_account := v_leg.id;
            v_kind := v_leg.kind;
            v_balance := v_leg.balance;
            v_available := v_leg.available_balance;
            v_reserved := v_leg.reserved_balance;
            v_released := 0;
            v_seq := v_leg.entry_seq;
            v_last_hash := v_leg.last_hash;
        END IF;

        IF v_leg.hold_id IS NOT NULL THEN
            IF v_leg.amount > 0 THEN
                RAISE EXCEPTION 'a leg paid from a hold must be a debit' USING ERRCODE = 'LG008';
            END IF;
            -- Committing a hold (at its last leg) returns whatever it did not consume to available.
            UPDATE holds h
               SET consumed = h.consumed - v_leg.amount,
                   status = CASE WHEN p_close_holds AND v_leg.hold_last THEN 'committed' ELSE h.status END,
                   closed_at = CASE WHEN p_close_holds AND v_leg.hold_last THEN v_now ELSE h.closed_at END
             WHERE h.id = v_leg.hold_id AND h.status = 'active' AND h.account_id = v_leg.id
               AND h.consumed - v_leg.amount <= h.amount
            RETURNING h.amount - h.consumed INTO v_rest;
            IF NOT FOUND THEN
                SELECT h.* INTO v_hold FROM holds h WHERE h.id = v_leg.hold_id;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'unknown hold %', v_leg.hold_id USING ERRCODE = 'LG005';
                ELSIF v_hold.status <> 'active' THEN
                    RAISE EXCEPTION 'hold % is %', v_hold.id, v_hold.status USING ERRCODE = 'LG002';
                ELSIF v_hold.account_id <> v_leg.id THEN
                    RAISE EXCEPTION 'hold % belongs to another account', v_hold.id USING ERRCODE = 'LG006';
                END IF;
                RAISE EXCEPTION 'debit exceeds what hold % has left', v_hold.id USING ERRCODE = 'LG001';
            END IF;
            v_reserved := v_reserved + v_leg.amount;
            IF p_close_holds AND v_leg.hold_last THEN
                v_released := v_released + v_rest;
            END IF;
        ELSE
            v_available := v_available + v_leg.amount;
            IF v_kind = 'customer' AND v_available < 0 THEN
                RAISE EXCEPTION 'insufficient funds in account %', v_leg.id USING ERRCODE = 'LG001';
            END IF;
        END IF;
        v_balance := v_balance + v_leg.amount;
        v_seq := v_seq + 1;
        v_entry := gen_random_uuid();
        v_hash := ledger_entry_hash(v_last_hash, v_entry, p_tx_id, v_leg.id, v_seq, v_leg.currency,
                                    v_leg.amount, v_balance, p_ref_type, p_ref_id, v_now);
        e_ids := e_ids || v_entry;
        e_accounts := e_accounts || v_leg.id;
        e_seqs := e_seqs || v_seq;
        e_currencies := e_currencies || v_leg.currency;
        e_amounts := e_amounts || v_leg.amount;
        e_balances := e_balances || v_balance;
        e_prev := e_prev || v_last_hash;
        e_hashes := e_hashes || v_hash;
        v_last_hash := v_hash;
    END LOOP;

    IF v_seen < v_legs THEN  -- a leg joined no account
        SELECT coalesce(l.account_id::text, l.house) AS name INTO v_leg
          FROM jsonb_to_recordset(p_legs) AS l(account_id uuid, house text, shards int, currency text)
         WHERE NOT EXISTS (
                SELECT 1 FROM accounts a
                 WHERE a.id = l.account_id
                    OR (l.house IS NOT NULL AND a.kind = 'house' AND a.code = l.house
                        AND a.currency = l.currency AND a.shard = pg_backend_pid() % greatest(l.shards, 1)))
         LIMIT 1;
        RAISE EXCEPTION 'unknown account %', v_leg.name USING ERRCODE = 'LG005';
    END IF;
    u_ids := u_ids || v_account;
    u_balances := u_balances || v_balance;
    u_availables := u_availables || (v_available + v_released);
    u_reserveds := u_reserveds || (v_reserved - v_released);
    u_seqs := u_seqs || v_seq;
    u_hashes := u_hashes || v_last_hash;

    UPDATE accounts a
       SET balance = u.balance, available_balance = u.available, reserved_balance = u.reserved,
           entry_seq = u.seq, last_hash = u.hash, updated_at = v_now
      FROM unnest(u_ids, u_balances, u_availables, u_reserveds, u_seqs, u_hashes)
           AS u(id, balance, available, reserved, seq, hash)
     WHERE a.id = u.id;
    INSERT INTO ledger_entries (id, transaction_id, account_id, seq, currency, amount, balance_after,
                                reference_type, reference_id, created_at, created_by, prev_hash, hash)
    SELECT e.id, p_tx_id, e.account_id, e.seq, e.currency, e.amount, e.balance_after,
           p_ref_type, p_ref_id, v_now, p_created_by, e.prev_hash, e.hash
      FROM unnest(e_ids, e_accounts, e_seqs, e_currencies, e_amounts, e_balances, e_prev, e_hashes)
           AS e(id, account_id, seq, currency, amount, balance_after, prev_hash, hash);
    RETURN QUERY SELECT p_tx_id, false;
END $$;
"""

LEDGER_POST_BATCH = """
CREATE FUNCTION ledger_post_batch(p_postings jsonb)
RETURNS TABLE (idx int, transaction_id uuid, replayed boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_p record;
BEGIN
    -- Lock every row the batch will touch up front, in ledger_post's order: a house leg is named by
    -- code and resolves to this backend's shard, exactly as ledger_post resolves it.
    PERFORM 1
       FROM accounts a
       JOIN (SELECT l.account_id AS id, false AS by_code
               FROM jsonb_array_elements(p_postings) p,
                    jsonb_to_recordset(p->'legs') AS l(account_id uuid)
              WHERE l.account_id IS NOT NULL
             UNION
             SELECT h.id, true
               FROM jsonb_array_elements(p_postings) p,
                    jsonb_to_recordset(p->'legs') AS l(house text, shards int, currency text)
               JOIN accounts h
                 ON h.kind = 'house' AND h.code = l.house AND h.currency = l.currency
                AND h.shard = pg_backend_pid() % greatest(l.shards, 1)
              WHERE l.house IS NOT NULL) t ON t.id = a.id
      ORDER BY t.by_code, a.id
        FOR UPDATE OF a;

    FOR v_p IN
        SELECT (e.n - 1)::int AS i, (e.p->>'tx')::uuid AS tx, e.p->>'key' AS key, e.p->>'hash' AS hash,
               e.p->>'kind' AS kind, e.p->>'rt' AS rt, (e.p->>'rid')::uuid AS rid,
               (e.p->>'by')::uuid AS created_by, coalesce(e.p->'meta', '{}'::jsonb) AS meta, e.p->'legs' AS legs,
               coalesce((e.p->>'close')::boolean, true) AS close
          FROM jsonb_array_elements(p_postings) WITH ORDINALITY AS e(p, n)
         ORDER BY e.n
    LOOP
        RETURN QUERY
            SELECT v_p.i, r.transaction_id, r.replayed
              FROM ledger_post(v_p.tx, v_p.key, v_p.hash, v_p.kind, v_p.rt, v_p.rid, v_p.created_by,
                               v_p.meta, v_p.legs, v_p.close) r;
    END LOOP;
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
    op.execute(LEDGER_POST)
    op.execute(LEDGER_POST_BATCH)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_post_batch(jsonb)")
    op.execute(_ledger_post_of_0002())
