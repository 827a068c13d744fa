"""The audit log's one writer, its search, and the verification of its hash chain (models/audit.py).

Writers call `record` inside the transaction of the change they describe, so a rolled-back change leaves
no row. The chain itself is made by the database at commit (migration 0033), whoever inserted the row;
`verify_chain` recomputes every hash in chain order and reports the first row that does not match.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import AuditLog

_INSERT = text(
    "INSERT INTO audit_log (id, actor_id, actor_type, action, target_type, target_id, details, ip) "
    "VALUES (:id, :actor_id, :actor_type, :action, :target_type, :target_id, CAST(:details AS jsonb), :ip)"
)


async def record(
    db: AsyncConnection | AsyncSession,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    actor_type: str = "system",
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> uuid.UUID:
    """Insert one audit row in the caller's transaction (the caller commits). Staff actions pass
    `actor_type="staff"`, their id, the client address, and `details` with `before`/`after` where a
    value changed. Returns the row's id."""
    row_id = uuid.uuid4()
    params = {
        "id": row_id,
        "actor_id": actor_id,
        "actor_type": actor_type[:20],
        "action": action[:100],
        "target_type": target_type,
        "target_id": str(target_id) if target_id is not None else None,
        "details": json.dumps(details, default=str) if details is not None else None,
        "ip": ip[:64] if ip else None,
    }
    if isinstance(db, AsyncSession):
        await db.exec(_INSERT, params=params)  # type: ignore[call-overload]
    else:
        await db.execute(_INSERT, params)
    return row_id


def add(
    session: Session | AsyncSession,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    actor_type: str = "system",
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditLog:
    """`record` for code that builds ORM units of work (`services.auth`, the CLI's sync sessions): the row
    is added to `session` and written with the caller's commit."""
    row = AuditLog(
        actor_id=actor_id,
        actor_type=actor_type[:20],
        action=action[:100],
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        details=details,
        ip=ip[:64] if ip else None,
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `verify_chain`: `ok`, how many rows were checked, and the first broken row."""

    ok: bool
    rows: int
    first_broken_seq: int | None = None
    first_broken_id: str | None = None
    problem: str | None = None


_VERIFY = text(
    """
    WITH chain AS (
        SELECT seq, id, prev_hash, hash,
               audit_row_hash(prev_hash, seq, id, actor_id, actor_type, action, target_type, target_id,
                              details, ip, created_at) AS expected,
               lag(hash) OVER (ORDER BY seq) AS before_hash,
               coalesce(lag(seq) OVER (ORDER BY seq), 0) AS before_seq
        FROM audit_log WHERE seq IS NOT NULL
    )
    SELECT seq, id,
           CASE WHEN seq <> before_seq + 1 THEN 'a row is missing before this one'
                WHEN prev_hash IS DISTINCT FROM before_hash THEN 'prev_hash is not the previous row''s hash'
                ELSE 'the row does not match its hash (changed after it was written)' END AS problem
    FROM chain
    WHERE hash IS DISTINCT FROM expected OR prev_hash IS DISTINCT FROM before_hash OR seq <> before_seq + 1
    ORDER BY seq LIMIT 1
    """
)


async def verify_chain(engine: AsyncEngine) -> ChainReport:
    """Recompute the whole chain in one consistent snapshot. Also catches rows that escaped chaining
    (written with triggers off) and a chain cut short at its end (the head records the last row)."""
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        count = (await conn.execute(text("SELECT count(seq), count(*) FROM audit_log"))).one()
        broken = (await conn.execute(_VERIFY)).first()
        if broken is not None:
            return ChainReport(False, count[0], broken[0], str(broken[1]), broken[2])
        if count[1] != count[0]:
            loose = (
                await conn.execute(
                    text("SELECT id FROM audit_log WHERE seq IS NULL ORDER BY created_at LIMIT 1")
                )
            ).one()
            return ChainReport(False, count[0], None, str(loose[0]), "a row is outside the chain")
        head = (await conn.execute(text("SELECT last_seq, last_hash FROM audit_chain_head"))).one()
        last = (await conn.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))).first()
        tail = (last[0], last[1]) if last else (0, None)
        if tail != (head[0], head[1]):
            return ChainReport(False, count[0], head[0], None, "the chain's last rows are missing")
    return ChainReport(True, count[0])


@dataclass(frozen=True)
class AuditRow:
    seq: int | None
    id: str
    created_at: datetime
    actor_id: str | None
    actor_email: str | None
    actor_type: str
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True)
class AuditQuery:
    """Search terms: `text` matches the action, target id or actor email (substring, case-insensitive);
    `before_seq` pages back from a row."""

    text: str = ""
    action: str = ""
    target_id: str = ""
    actor_email: str = ""
    before_seq: int | None = None
    limit: int = 50


async def search(engine: AsyncEngine, q: AuditQuery) -> list[AuditRow]:
    """Newest first."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": max(1, min(q.limit, 500))}
    if q.text:
        where.append(
            "(a.action ILIKE :t OR a.target_id ILIKE :t OR u.email ILIKE :t OR a.details::text ILIKE :t)"
        )
        params["t"] = f"%{_escape_like(q.text)}%"
    if q.action:
        where.append("a.action LIKE :a")
        params["a"] = f"{_escape_like(q.action)}%"
    if q.target_id:
        where.append("a.target_id = :tid")
        params["tid"] = q.target_id
    if q.actor_email:
        where.append("u.email = :ae")
        params["ae"] = q.actor_email.strip().lower()
    if q.before_seq is not None:
        where.append("a.seq < :bs")
        params["bs"] = q.before_seq
    sql = text(
        "SELECT a.seq, a.id, a.created_at, a.actor_id, u.email, a.actor_type, a.action, a.target_type, "
        "a.target_id, a.ip, a.details FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id "
        f"WHERE {' AND '.join(where)} ORDER BY a.seq DESC NULLS FIRST LIMIT :limit"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sql, params)).all()
    return [
        AuditRow(
            seq=r[0],
            id=str(r[1]),
            created_at=r[2],
            actor_id=str(r[3]) if r[3] else None,
            actor_email=r[4],
            actor_type=r[5],
            action=r[6],
            target_type=r[7],
            target_id=r[8],
            ip=r[9],
            details=r[10],
        )
        for r in rows
    ]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
