"""Working an AML case (issue 16 item 3): the compliance queue, a case's file, assignment, notes, linked
transactions and closing with an outcome.

A case groups a customer's live alerts (services/aml/alerts.py opens it, pending, due in 30 days). It goes
pending → investigating (when someone is assigned) → closed, with one of the outcomes false_positive,
valuable_alert or confirmed_risk; a closed case is never reopened (new alerts open a new case). Notes are
append-only (the table refuses UPDATE and DELETE), each with its author and time. Every step is audited
with the staff user, who proved TOTP at the API; the functions take plain ids, so the console and the
SAR workflow's activities use them without HTTP.

Internal records only: nothing here reaches a customer (no tipping off).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.aml_cases_api import (
    CaseAlert,
    CaseDetail,
    CaseNote,
    CasePage,
    CaseSummary,
    LinkedTransaction,
    SarSummary,
)
from services.alerts import audit
from services.aml import freeze
from services.errors import DomainError
from services.pagination import DbRow, fetch_page

OUTCOMES = ("false_positive", "valuable_alert", "confirmed_risk")
OPEN = ("pending", "investigating")


class CaseNotFound(DomainError):
    """No such case: check the id."""

    default_code = "case_not_found"
    status = 404


class CaseRefused(DomainError):
    """The step does not fit the case's state (closed, or the assignee is not compliance staff); read
    `detail`, nothing changed."""

    default_code = "case_refused"
    status = 409


def sar_workflow_id(case_id: uuid.UUID) -> str:
    return f"sar-{case_id}"


_SUMMARY = (
    "SELECT c.id, c.user_id, c.status, c.outcome, c.assignee_id, c.due_at, c.opened_at AS created_at, "
    "c.closed_at, (SELECT count(*) FROM aml_alerts a WHERE a.case_id = c.id) AS alert_count, "
    "(SELECT coalesce(sum(a.score), 0) FROM aml_alerts a WHERE a.case_id = c.id) AS score FROM aml_cases c"
)


def _summary(row: DbRow) -> CaseSummary:
    return CaseSummary(
        id=row[0], user_id=row[1], status=row[2], outcome=row[3], assignee_id=row[4], due_at=row[5],
        opened_at=row[6], closed_at=row[7], alert_count=row[8], score=row[9],
        workflow_id=sar_workflow_id(row[0]),
    )  # fmt: skip


async def case_queue(
    engine: AsyncEngine,
    *,
    status: str | None = None,
    assignee_id: uuid.UUID | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> CasePage:
    """Cases newest first; by default the open ones (pending and investigating)."""
    where: list[str] = []
    params: dict[str, object] = {}
    if status is None:
        where.append("status IN ('pending', 'investigating')")
    else:
        where.append("status = :s")
        params["s"] = status
    if assignee_id is not None:
        where.append("assignee_id = :a")
        params["a"] = assignee_id
    rows, next_cursor = await fetch_page(
        engine,
        select=f"SELECT * FROM ({_SUMMARY}) q",
        where=" AND ".join(where),
        params=params,
        limit=limit,
        cursor=cursor,
        position=lambda r: (r[6], r[0]),
    )
    return CasePage(cases=[_summary(r) for r in rows], next_cursor=next_cursor)


async def case_detail(engine: AsyncEngine, case_id: uuid.UUID) -> CaseDetail:
    """The case's file: its alerts, notes (oldest first), linked transactions, SAR and freeze."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(f"{_SUMMARY} WHERE c.id = :id"), {"id": case_id})).first()
        if row is None:
            raise CaseNotFound("no such case")
        summary = _summary(row)
        alerts = (
            await conn.execute(
                text(
                    "SELECT id, rule_code, score, outcome, subject_type, subject_id, details, created_at "
                    "FROM aml_alerts WHERE case_id = :id ORDER BY created_at, id"
                ),
                {"id": case_id},
            )
        ).all()
        notes = (
            await conn.execute(
                text(
                    "SELECT id, author_id, body, created_at FROM aml_case_notes WHERE case_id = :id "
                    "ORDER BY created_at, id"
                ),
                {"id": case_id},
            )
        ).all()
        links = (
            await conn.execute(
                text(
                    "SELECT kind, transaction_id FROM aml_case_transactions WHERE case_id = :id "
                    "ORDER BY created_at"
                ),
                {"id": case_id},
            )
        ).all()
        sar = (
            await conn.execute(
                text(
                    "SELECT nca_reference, narrative, attachments, filed_by, filed_at, daml_state, "
                    "daml_withdrawal_id, notice_ends_at, refused_at, moratorium_ends_at "
                    "FROM aml_sar_reports WHERE case_id = :id"
                ),
                {"id": case_id},
            )
        ).first()
        frozen = await freeze.is_frozen(conn, summary.user_id)
    transactions = [
        LinkedTransaction(kind=a[4], transaction_id=a[5], source="alert")
        for a in alerts
        if a[4] != "customer"
    ]
    seen = {(t.kind, t.transaction_id) for t in transactions}
    for kind, txn in links:
        if (kind, str(txn)) not in seen:
            transactions.append(LinkedTransaction(kind=kind, transaction_id=str(txn), source="staff"))
            seen.add((kind, str(txn)))
    return CaseDetail(
        **summary.model_dump(),
        alerts=[
            CaseAlert(
                id=a[0],
                rule_code=a[1],
                score=a[2],
                outcome=a[3],
                subject_type=a[4],
                subject_id=a[5],
                details=a[6],
                created_at=a[7],
            )  # fmt: skip
            for a in alerts
        ],
        notes=[CaseNote(id=n[0], author_id=n[1], body=n[2], created_at=n[3]) for n in notes],
        transactions=transactions,
        sar=SarSummary(
            nca_reference=sar[0],
            narrative=sar[1],
            attachments=sar[2],
            filed_by=sar[3],
            filed_at=sar[4],
            daml_state=sar[5],
            daml_withdrawal_id=sar[6],
            notice_ends_at=sar[7],
            refused_at=sar[8],
            moratorium_ends_at=sar[9],
        )  # fmt: skip
        if sar
        else None,
        frozen=frozen,
    )


async def lock_case(conn: AsyncConnection, case_id: uuid.UUID) -> tuple[uuid.UUID, str]:
    """Lock the case row; (customer, status). `CaseNotFound` if there is none."""
    row = (
        await conn.execute(
            text("SELECT user_id, status FROM aml_cases WHERE id = :id FOR UPDATE"), {"id": case_id}
        )
    ).first()
    if row is None:
        raise CaseNotFound("no such case")
    return row[0], row[1]


async def _open_case(conn: AsyncConnection, case_id: uuid.UUID) -> tuple[uuid.UUID, str]:
    user_id, status = await lock_case(conn, case_id)
    if status not in OPEN:
        raise CaseRefused(f"the case is {status}")
    return user_id, status


async def assign(
    engine: AsyncEngine, *, case_id: uuid.UUID, assignee_id: uuid.UUID, staff_id: uuid.UUID
) -> CaseDetail:
    """Give the case to a compliance user; a pending case becomes investigating."""
    async with engine.begin() as conn:
        await _open_case(conn, case_id)
        roles = (
            await conn.execute(
                text("SELECT roles FROM users WHERE id = :u AND status = 'ACTIVE'"), {"u": assignee_id}
            )
        ).first()
        if roles is None or "compliance" not in roles[0]:
            raise CaseRefused("the assignee must be an active user with the compliance role")
        await conn.execute(
            text("UPDATE aml_cases SET assignee_id = :a, status = 'investigating' WHERE id = :id"),
            {"a": assignee_id, "id": case_id},
        )
        await audit(
            conn, "aml.case.assigned", actor_id=staff_id, actor_type="staff", target_type="aml_case",
            target_id=str(case_id), assignee_id=str(assignee_id),
        )  # fmt: skip
    return await case_detail(engine, case_id)


async def add_note(
    engine: AsyncEngine, *, case_id: uuid.UUID, author_id: uuid.UUID, body: str, now: datetime | None = None
) -> CaseNote:
    """Append a note to the case's file (closed cases too: the file may grow after the decision)."""
    async with engine.begin() as conn:
        await lock_case(conn, case_id)
        note = await append_note(conn, case_id=case_id, author_id=author_id, body=body, now=now)
    return note


async def append_note(
    conn: AsyncConnection, *, case_id: uuid.UUID, author_id: uuid.UUID, body: str, now: datetime | None = None
) -> CaseNote:
    row = (
        await conn.execute(
            text(
                "INSERT INTO aml_case_notes (id, case_id, author_id, body, created_at) "
                "VALUES (:id, :c, :a, :b, coalesce(:now, now())) RETURNING id, author_id, body, created_at"
            ),
            {"id": uuid.uuid4(), "c": case_id, "a": author_id, "b": body.strip(), "now": now},
        )
    ).one()
    return CaseNote(id=row[0], author_id=row[1], body=row[2], created_at=row[3])


async def link_transaction(
    engine: AsyncEngine, *, case_id: uuid.UUID, kind: str, transaction_id: uuid.UUID, staff_id: uuid.UUID
) -> CaseDetail:
    """Link one of the customer's transactions to the case (idempotent)."""
    table = {"withdrawal": "withdrawals", "deposit": "deposits", "trade": "trades", "order": "orders"}[kind]
    async with engine.begin() as conn:
        user_id, _ = await _open_case(conn, case_id)
        owner = (
            await conn.execute(text(f"SELECT user_id FROM {table} WHERE id = :t"), {"t": transaction_id})
        ).first()
        if owner is None or owner[0] != user_id:
            raise CaseRefused(f"no {kind} {transaction_id} of this customer")
        await conn.execute(
            text(
                "INSERT INTO aml_case_transactions (case_id, kind, transaction_id, linked_by) "
                "VALUES (:c, :k, :t, :s) ON CONFLICT DO NOTHING"
            ),
            {"c": case_id, "k": kind, "t": transaction_id, "s": staff_id},
        )
        await audit(
            conn, "aml.case.linked", actor_id=staff_id, actor_type="staff", target_type="aml_case",
            target_id=str(case_id), kind=kind, transaction_id=str(transaction_id),
        )  # fmt: skip
    return await case_detail(engine, case_id)


async def close_case(
    engine: AsyncEngine, *, case_id: uuid.UUID, outcome: str, staff_id: uuid.UUID, note: str
) -> CaseDetail:
    """Close the case with its outcome and the reason as a note. Refused while a withdrawal of the case
    waits in UNDER_REVIEW: closing would leave it held with nobody to decide it; clearing or declining
    the case (the SAR workflow) decides its withdrawals and closes it."""
    async with engine.begin() as conn:
        held = await _held_for_review(conn, case_id)
        if held:
            raise CaseRefused(
                f"{len(held)} withdrawal(s) of this case are held for review: "
                "clear or decline the case instead"
            )
        await close_case_in(conn, case_id=case_id, outcome=outcome, staff_id=staff_id, note=note)
    return await case_detail(engine, case_id)


async def close_case_in(
    conn: AsyncConnection, *, case_id: uuid.UUID, outcome: str, staff_id: uuid.UUID | None, note: str
) -> bool:
    """Close in the caller's transaction; False when it was already closed with this outcome (a retry)."""
    if outcome not in OUTCOMES:
        raise CaseRefused(f"the outcome must be one of {', '.join(OUTCOMES)}")
    user_id, status = await lock_case(conn, case_id)
    if status == "closed":
        current = (
            await conn.execute(text("SELECT outcome FROM aml_cases WHERE id = :id"), {"id": case_id})
        ).scalar()
        if current == outcome:
            return False
        raise CaseRefused(f"the case is already closed ({current})")
    await conn.execute(
        text("UPDATE aml_cases SET status = 'closed', outcome = :o, closed_at = now() WHERE id = :id"),
        {"o": outcome, "id": case_id},
    )
    if staff_id is not None:
        await append_note(conn, case_id=case_id, author_id=staff_id, body=f"closed ({outcome}): {note}")
    await audit(
        conn, "aml.case.closed", actor_id=staff_id, actor_type="staff" if staff_id else "system",
        target_type="aml_case", target_id=str(case_id), outcome=outcome, user_id=str(user_id),
    )  # fmt: skip
    return True


async def _held_for_review(conn: AsyncConnection, case_id: uuid.UUID) -> list[uuid.UUID]:
    held = await case_withdrawals(conn, case_id)
    if not held:
        return []
    rows = await conn.execute(
        text("SELECT id FROM withdrawals WHERE id = ANY(:ids) AND status = 'UNDER_REVIEW'"), {"ids": held}
    )
    return [r[0] for r in rows]


async def case_withdrawals(conn: AsyncConnection, case_id: uuid.UUID) -> list[uuid.UUID]:
    """The case's withdrawals that have not finished (from its alerts and its links), oldest first."""
    rows = await conn.execute(
        text(
            "SELECT w.id FROM withdrawals w WHERE w.id IN ("
            "  SELECT CAST(a.subject_id AS uuid) FROM aml_alerts a WHERE a.case_id = :c "
            "  AND a.subject_type = 'withdrawal' "
            "  UNION SELECT t.transaction_id FROM aml_case_transactions t WHERE t.case_id = :c "
            "  AND t.kind = 'withdrawal'"
            ") AND w.status NOT IN ('COMPLETED', 'FAILED', 'REJECTED', 'CANCELLED') ORDER BY w.created_at"
        ),
        {"c": case_id},
    )
    return [r[0] for r in rows]
