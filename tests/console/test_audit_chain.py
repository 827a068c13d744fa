"""The audit log's hash chain at the database level: every writer's rows are chained at commit in commit
order, concurrent writers leave no gap or fork, a writer cannot choose its own hash, and rows stay
append-only."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services import audit


async def test_concurrent_writers_make_one_unbroken_chain(engine: AsyncEngine) -> None:
    marker = uuid.uuid4().hex

    async def write(i: int) -> None:
        async with engine.begin() as conn:
            await audit.record(conn, "test.chain", target_type="test", target_id=marker, details={"i": i})
            await audit.record(conn, "test.chain", target_type="test", target_id=marker, details={"i": -i})

    async def rolled_back() -> None:
        async with engine.connect() as conn:
            await audit.record(conn, "test.chain", target_type="test", target_id=marker, details={"gone": 1})
            await conn.rollback()

    await asyncio.gather(*(write(i) for i in range(1, 21)), rolled_back())
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT seq, prev_hash, hash FROM audit_log WHERE target_id = :m ORDER BY seq"),
                {"m": marker},
            )
        ).all()
    assert len(rows) == 40 and all(r[2] and len(r[2]) == 64 for r in rows)
    report = await audit.verify_chain(engine)
    assert report.ok, report


async def test_raw_sql_writers_are_chained_and_cannot_choose_their_hash(engine: AsyncEngine) -> None:
    row_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, actor_type, action, seq, prev_hash, hash) "
                "VALUES (:i, 'system', 'test.raw', 999999999, 'x', :h)"
            ),
            {"i": row_id, "h": "0" * 64},
        )
    async with engine.connect() as conn:
        seq, prev_hash, hash_ = (
            await conn.execute(
                text("SELECT seq, prev_hash, hash FROM audit_log WHERE id = :i"), {"i": row_id}
            )
        ).one()
        last = (await conn.execute(text("SELECT max(seq) FROM audit_log"))).scalar()
    assert seq != 999999999 and seq <= last and hash_ != "0" * 64 and prev_hash != "x"
    assert (await audit.verify_chain(engine)).ok


async def test_chained_rows_cannot_be_changed_or_deleted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        row_id = await audit.record(conn, "test.append_only")
    for statement in (
        "UPDATE audit_log SET hash = NULL, seq = NULL, prev_hash = NULL WHERE id = :i",
        "UPDATE audit_log SET action = 'test.changed' WHERE id = :i",
        "DELETE FROM audit_log WHERE id = :i",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"i": row_id})


async def test_a_removed_tail_is_noticed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        row_id = await audit.record(conn, "test.tail")
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        saved = (
            (await conn.execute(text("SELECT * FROM audit_log WHERE id = :i"), {"i": row_id}))
            .mappings()
            .one()
        )
        await conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": row_id})
    try:
        report = await audit.verify_chain(engine)
        assert not report.ok and report.problem == "the chain's last rows are missing"
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            cols = ", ".join(saved.keys())
            await conn.execute(
                text(f"INSERT INTO audit_log ({cols}) VALUES ({', '.join(':' + k for k in saved.keys())})"),
                dict(saved),
            )
    assert (await audit.verify_chain(engine)).ok
