"""rate limits in PostgreSQL: one window per key, shared by every API process (issue 19 item 1)

Revision ID: 0026
Revises: 0020
Create Date: 2026-12-01

Until now each API process counted requests in its own memory, so N processes allowed N times the limit.
`rate_limit_windows` holds one row per key (`ip:…`, `user:…`, `withdrawal:…`); `rate_limit_hit` counts a
hit and answers in one statement (one round trip, autocommit):

- The window is counted in `buckets + 1` buckets of `window / buckets` seconds (the newest first in
  `counts`). A bucket leaves the count only when all of it is older than the window, so the count always
  covers at least the whole window: the limit is never exceeded in any window, and a client may wait up
  to one bucket (1 s for a minute, 1 min for an hour) longer than an exact sliding log would make it.
- Under the limit the hit is added and NULL returned; at the limit nothing is written and the answer is
  the whole seconds until enough of the oldest hits leave the window (`Retry-After`).
- The row is locked while it is read and written, so concurrent hits on one key from any process are
  counted one after the other. Time is the database's clock, the same for every process (`p_now` lets
  tests drive it).

UNLOGGED: no WAL per request; a crash forgets the counts (at most one window of leniency). `expires_at`
is when every bucket has left the window; the API sweeps rows past it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATE_LIMIT_HIT = """
CREATE FUNCTION rate_limit_hit(
    p_key text, p_limit integer, p_window_s double precision, p_buckets integer,
    p_now double precision DEFAULT NULL
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
    v_width double precision := p_window_s / p_buckets;
    v_keep integer := p_buckets + 1;
    v_cur bigint := floor(v_now / v_width)::bigint;
    v_newest bigint;
    v_old integer[];
    v_counts integer[];
    v_shift bigint;
    v_total integer := 0;
    v_freed integer := 0;
    i integer;
BEGIN
    IF p_limit < 1 OR p_window_s <= 0 OR p_buckets < 1 THEN
        RAISE EXCEPTION 'rate_limit_hit: bad arguments' USING ERRCODE = '22023';
    END IF;
    SELECT newest, counts INTO v_newest, v_old FROM rate_limit_windows WHERE key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limit_windows (key, newest, counts, expires_at)
        VALUES (p_key, v_cur, ARRAY[1], to_timestamp((v_cur + v_keep) * v_width))
        ON CONFLICT (key) DO NOTHING;
        IF FOUND THEN
            RETURN NULL;
        END IF;
        -- another process created the row meanwhile: count on it like any other hit
        SELECT newest, counts INTO v_newest, v_old FROM rate_limit_windows WHERE key = p_key FOR UPDATE;
    END IF;

    v_shift := v_cur - v_newest;
    IF v_shift < 0 THEN  -- a clock that went back: count into the newest bucket there is
        v_shift := 0;
        v_cur := v_newest;
    END IF;
    v_counts := array_fill(0, ARRAY[v_keep]);
    IF v_shift < v_keep THEN
        FOR i IN (v_shift + 1)..v_keep LOOP
            v_counts[i] := coalesce(v_old[i - v_shift], 0);
            v_total := v_total + v_counts[i];
        END LOOP;
    END IF;

    IF v_total < p_limit THEN
        v_counts[1] := v_counts[1] + 1;
        UPDATE rate_limit_windows
        SET newest = v_cur, counts = v_counts, expires_at = to_timestamp((v_cur + v_keep) * v_width)
        WHERE key = p_key;
        RETURN NULL;
    END IF;

    -- Refused, nothing written: wait until the oldest buckets holding enough hits have left the window.
    FOR i IN REVERSE v_keep..1 LOOP
        v_freed := v_freed + v_counts[i];
        IF v_total - v_freed < p_limit THEN
            RETURN greatest(1, ceil((v_cur - (i - 1) + v_keep) * v_width - v_now))::integer;
        END IF;
    END LOOP;
    RETURN greatest(1, ceil(v_width))::integer;  -- not reached: the loop frees every hit
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("newest", sa.BigInteger(), nullable=False),
        sa.Column("counts", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_rate_limit_windows_expires_at", "rate_limit_windows", ["expires_at"])
    op.execute(RATE_LIMIT_HIT)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS rate_limit_hit(text, integer, double precision, integer, double precision)"
    )
    op.drop_index("ix_rate_limit_windows_expires_at", table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
