"""KYC tiers 0-3: submissions, the saga's recorded states, what a customer sees, and who may review.

Tier 1 (name, date of birth, address, phone) is screened against the sanctions and PEP lists
(`services.screening`); tier 2 is the vendor's document check; tier 3 (source of funds) is always decided by
compliance. A customer asks for the next tier only (1 after 0, ...), and has at most one open submission per
tier (a partial unique index, so a double click cannot start two sagas). The saga (`workflows/kyc.py`)
records every state change here with `apply_status`: the row, an audit-log line and, on APPROVED, the
customer's tier (never lowered). Nothing here tells a customer about screening: the customer's messages
are fixed texts per state (`customer_message`), and the vendor's moderation comment, which is written for
the applicant, is the only outside text passed on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.compliance import KYC_OPEN_STATUSES
from models.kyc import (
    KycOverview,
    KycStatus,
    LimitUsage,
    NextTier,
    ScreenResult,
    StatusChange,
    SubmissionOut,
    Tier1In,
    Tier3In,
    VendorOutcome,
)
from models.screening import Action, CheckResult
from services import audit as audit_log
from services import limits
from services.errors import DomainError
from services.orders import trading_used
from services.screening import service as screening

NEXT_TIER_NEEDS: dict[int, NextTier] = {
    1: NextTier(
        tier=1,
        needs=["first_name", "last_name", "date_of_birth", "address", "phone"],
        how="POST /api/v1/kyc/tier1",
    ),
    2: NextTier(
        tier=2,
        needs=["identity document (passport, ID card or driving licence)"],
        how="POST /api/v1/kyc/tier2/documents, then POST /api/v1/kyc/tier2/submit",
    ),
    3: NextTier(
        tier=3,
        needs=["source-of-funds questionnaire", "evidence (payslips, statements, ...)"],
        how="POST /api/v1/kyc/tier3 (multipart: questionnaire + evidence files)",
    ),
}

_CUSTOMER_MESSAGES: dict[KycStatus, str] = {
    KycStatus.PENDING: "We have received your details and are checking them.",
    KycStatus.VENDOR_CHECK: "Your documents are being verified.",
    KycStatus.RESUBMIT_REQUESTED: "We could not verify your documents. Please upload them again.",
    KycStatus.IN_REVIEW: "Your application is being reviewed by our team. We will email you.",
    KycStatus.APPROVED: "Your verification is complete: your new limits apply now.",
    KycStatus.REJECTED: "We are unable to verify your identity, so we cannot raise your limits.",
    KycStatus.EXPIRED: "Your verification expired before it was completed. You can start again.",
}


class KycRefused(DomainError):
    """The customer cannot make this KYC request now (wrong tier, one already open, nothing to submit).
    Tell them why; nothing was written."""

    default_code = "kyc_refused"
    status = 409


class KycDocumentInvalid(DomainError):
    """The uploaded document or evidence is empty, too large or of a type we do not take: fix and resend."""

    default_code = "kyc_document_invalid"
    status = 422


@dataclass(frozen=True, slots=True)
class Draft:
    submission_id: uuid.UUID
    applicant_id: str | None


@dataclass(frozen=True, slots=True)
class Evidence:
    filename: str
    content_type: str
    content: bytes


def customer_message(status: KycStatus, vendor: VendorOutcome | None = None) -> str:
    """What the customer reads for `status`: fixed words; for a resubmission, the vendor's own comment to
    the applicant (document problems), never a screening or compliance reason."""
    base = _CUSTOMER_MESSAGES.get(status, "")
    if status is KycStatus.RESUBMIT_REQUESTED and vendor is not None and vendor.moderation_comment:
        return f"{base} {vendor.moderation_comment}"
    return base


async def _tier(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    row = await limits.lock_customer(conn, user_id)
    if row is None:
        raise KycRefused("no such customer", code="not_found")
    return row[0]


def _refuse_unless_next(current: int, wanted: int) -> None:
    if current >= wanted:
        raise KycRefused(f"you already have KYC tier {current}", code="kyc_tier_held")
    if current != wanted - 1:
        raise KycRefused(f"tier {wanted} needs tier {wanted - 1} first", code="kyc_tier_not_next")


async def _insert(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    tier: int,
    status: KycStatus,
    details: dict[str, Any],
    provider: str | None = None,
) -> uuid.UUID:
    submission_id = uuid.uuid4()
    try:
        async with conn.begin_nested():
            await conn.execute(
                text(
                    "INSERT INTO kyc_submissions (id, user_id, tier, status, provider, details) "
                    "VALUES (:id, :u, :t, :s, :p, CAST(:d AS jsonb))"
                ),
                {
                    "id": submission_id,
                    "u": user_id,
                    "t": tier,
                    "s": status.value,
                    "p": provider,
                    "d": json.dumps(details, default=str),
                },
            )
    except IntegrityError as e:
        raise KycRefused(
            f"a tier {tier} verification is already under way", code="kyc_submission_open"
        ) from e
    await audit(
        conn, "kyc.submitted", actor_id=user_id, actor_type="customer", submission_id=submission_id, tier=tier
    )
    return submission_id


async def submit_tier1(engine: AsyncEngine, user_id: uuid.UUID, data: Tier1In) -> uuid.UUID:
    """Record a tier-1 submission (PENDING); the caller starts its saga."""
    async with engine.begin() as conn:
        _refuse_unless_next(await _tier(conn, user_id), 1)
        return await _insert(
            conn, user_id=user_id, tier=1, status=KycStatus.PENDING, details=data.model_dump(mode="json")
        )


async def tier2_draft(engine: AsyncEngine, user_id: uuid.UUID, provider: str) -> Draft:
    """The customer's open tier-2 submission collecting documents (DRAFT or RESUBMIT_REQUESTED), created
    on first use."""
    async with engine.begin() as conn:
        current = await _tier(conn, user_id)
        row = (
            await conn.execute(
                text(
                    "SELECT id, status, provider_applicant_id FROM kyc_submissions WHERE user_id = :u "
                    "AND tier = 2 AND status = ANY(:open)"
                ),
                {"u": user_id, "open": list(KYC_OPEN_STATUSES)},
            )
        ).first()
        if row is not None:
            if row.status not in (KycStatus.DRAFT, KycStatus.RESUBMIT_REQUESTED):
                raise KycRefused("your documents are being checked", code="kyc_submission_open")
            return Draft(row.id, row.provider_applicant_id)
        _refuse_unless_next(current, 2)
        submission_id = await _insert(
            conn,
            user_id=user_id,
            tier=2,
            status=KycStatus.DRAFT,
            details={"documents": []},
            provider=provider,
        )
        return Draft(submission_id, None)


async def set_applicant(engine: AsyncEngine, submission_id: uuid.UUID, applicant_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE kyc_submissions SET provider_applicant_id = :a, updated_at = now() WHERE id = :id"),
            {"a": applicant_id, "id": submission_id},
        )


async def record_document(
    engine: AsyncEngine,
    submission_id: uuid.UUID,
    *,
    id_doc_type: str,
    country: str,
    image_id: str,
    sha256: str,
) -> None:
    doc = {
        "id_doc_type": id_doc_type,
        "country": country,
        "image_id": image_id,
        "sha256": sha256,
        "at": datetime.now(UTC).isoformat(),
    }
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE kyc_submissions SET details = jsonb_set(coalesce(details, '{}'), '{documents}', "
                "coalesce(details -> 'documents', '[]') || CAST(:d AS jsonb)), updated_at = now() "
                "WHERE id = :id"
            ),
            {"d": json.dumps([doc]), "id": submission_id},
        )


async def tier2_submission(engine: AsyncEngine, user_id: uuid.UUID) -> tuple[uuid.UUID, str, str]:
    """(submission id, status, applicant id) of the tier-2 submission the customer can submit now."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT id, status, provider_applicant_id, details FROM kyc_submissions "
                    "WHERE user_id = :u "
                    "AND tier = 2 AND status = ANY(:open)"
                ),
                {"u": user_id, "open": list(KYC_OPEN_STATUSES)},
            )
        ).first()
    if row is None or row.provider_applicant_id is None or not (row.details or {}).get("documents"):
        raise KycRefused("upload your identity document first", code="kyc_documents_missing")
    if row.status not in (KycStatus.DRAFT, KycStatus.RESUBMIT_REQUESTED):
        raise KycRefused("your documents are already being checked", code="kyc_submission_open")
    return row.id, row.status, row.provider_applicant_id


async def submit_tier3(
    engine: AsyncEngine, user_id: uuid.UUID, data: Tier3In, evidence: Sequence[Evidence], *, max_bytes: int
) -> uuid.UUID:
    """Record the questionnaire and its evidence in one transaction (PENDING); the caller starts its saga."""
    if not evidence:
        raise KycDocumentInvalid("at least one evidence file is required", field="evidence")
    for e in evidence:
        if not e.content or len(e.content) > max_bytes:
            raise KycDocumentInvalid(f"each file must be 1 byte to {max_bytes} bytes", field="evidence")
        if e.content_type not in ("application/pdf", "image/jpeg", "image/png"):
            raise KycDocumentInvalid("evidence must be PDF, JPEG or PNG", field="evidence")
    async with engine.begin() as conn:
        _refuse_unless_next(await _tier(conn, user_id), 3)
        submission_id = await _insert(
            conn, user_id=user_id, tier=3, status=KycStatus.PENDING, details=data.model_dump(mode="json")
        )
        for e in evidence:
            await conn.execute(
                text(
                    "INSERT INTO kyc_evidence (id, submission_id, filename, content_type, sha256, content) "
                    "VALUES (:id, :s, :f, :c, :h, :b)"
                ),
                {
                    "id": uuid.uuid4(),
                    "s": submission_id,
                    "f": e.filename[:200],
                    "c": e.content_type,
                    "h": hashlib.sha256(e.content).hexdigest(),
                    "b": e.content,
                },
            )
    return submission_id


async def audit(
    conn: AsyncConnection,
    action: str,
    *,
    actor_id: uuid.UUID | None,
    actor_type: str,
    submission_id: uuid.UUID,
    **details: Any,
) -> None:
    await audit_log.record(
        conn, action, actor_id=actor_id, actor_type=actor_type, target_type="kyc_submission",
        target_id=submission_id, details=details,
    )  # fmt: skip


async def apply_status(engine: AsyncEngine, change: StatusChange) -> bool:
    """Record one state change of the saga; True when it changed something (a repeat is a no-op, so the
    activity can be retried). APPROVED raises the customer's tier (never lowers it) in the same
    transaction; a tier-1 approval also keeps the verified name and phone on the user."""
    vendor = change.vendor.model_dump(mode="json") if change.vendor else None
    async with engine.begin() as conn:
        # The customer first, then the submission: the order the API's submissions lock in, so a new
        # submission racing this change waits instead of deadlocking.
        await limits.lock_customer(conn, change.user_id)
        row = (
            await conn.execute(
                text("SELECT status, details FROM kyc_submissions WHERE id = :id FOR UPDATE"),
                {"id": change.submission_id},
            )
        ).first()
        if row is None:
            raise LookupError(f"no KYC submission {change.submission_id}")
        if row.status == change.status.value:
            return False
        reviewed = change.reviewer_id is not None
        await conn.execute(
            text(
                "UPDATE kyc_submissions SET status = :s, updated_at = now(), "
                "vendor_result = coalesce(CAST(:v AS jsonb), vendor_result), "
                "rejection_reason = coalesce(CAST(:why AS text), rejection_reason), "
                "reviewed_by = CASE WHEN CAST(:rev AS boolean) THEN CAST(:r AS uuid) ELSE reviewed_by END, "
                "reviewed_at = CASE WHEN CAST(:rev AS boolean) THEN now() ELSE reviewed_at END WHERE id = :id"
            ),
            {
                "s": change.status.value,
                "v": json.dumps(vendor) if vendor else None,
                "why": change.internal_reason if change.status is KycStatus.REJECTED else None,
                "rev": reviewed,
                "r": change.reviewer_id,
                "id": change.submission_id,
            },
        )
        await audit(
            conn,
            f"kyc.{change.status.value.lower()}",
            actor_id=change.reviewer_id,
            actor_type="staff" if reviewed else "system",
            submission_id=change.submission_id,
            user_id=str(change.user_id),
            tier=change.tier,
            previous=row.status,
            reason=change.internal_reason,
            vendor=vendor,
        )
        if change.status is KycStatus.APPROVED:
            await conn.execute(
                text("UPDATE users SET kyc_tier = GREATEST(kyc_tier, :t), updated_at = now() WHERE id = :u"),
                {"t": change.tier, "u": change.user_id},
            )
            if change.tier == 1 and row.details:
                d = row.details
                await conn.execute(
                    text("UPDATE users SET first_name = :f, last_name = :l, phone = :p WHERE id = :u"),
                    {
                        "f": d.get("first_name"),
                        "l": d.get("last_name"),
                        "p": d.get("phone"),
                        "u": change.user_id,
                    },
                )
    return True


async def screening_subject(
    engine: AsyncEngine, submission_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, Any]]:
    """(user id, tier-1 details) to screen for this submission: its own details at tier 1, else those of
    the customer's approved tier-1 submission (or the registration name when none exists)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT s.user_id, s.tier, s.details, u.first_name, u.last_name FROM kyc_submissions s "
                    "JOIN users u ON u.id = s.user_id WHERE s.id = :id"
                ),
                {"id": submission_id},
            )
        ).one()
        if row.tier == 1:
            return row.user_id, dict(row.details or {})
        tier1 = (
            await conn.execute(
                text(
                    "SELECT details FROM kyc_submissions WHERE user_id = :u AND tier = 1 "
                    "AND status = 'APPROVED' "
                    "ORDER BY created_at DESC LIMIT 1"
                ),
                {"u": row.user_id},
            )
        ).scalar_one_or_none()
    if tier1:
        return row.user_id, dict(tier1)
    return row.user_id, {"first_name": row.first_name or "", "last_name": row.last_name or ""}


async def screen(
    engine: AsyncEngine, config: screening.ScreeningConfig, submission_id: uuid.UUID
) -> ScreenResult:
    """Set the customer's screening subject from their tier-1 data and screen them (an `aml_checks` row per
    list type). A possible match sends the submission to compliance; the screening service itself freezes
    the account above the freeze band."""
    user_id, details = await screening_subject(engine, submission_id)
    name = " ".join(p for p in (details.get("first_name"), details.get("last_name")) if p)
    dob = details.get("date_of_birth")
    await screening.set_subject(
        engine,
        user_id,
        full_name=name,
        date_of_birth=datetime.fromisoformat(dob).date() if isinstance(dob, str) else None,
        nationality=details.get("nationality"),
    )
    outcomes = await screening.screen_customer(engine, config, user_id)
    return ScreenResult(
        possible_match=any(o.result is CheckResult.HIT for o in outcomes),
        frozen=any(o.action is Action.FREEZE_PENDING_REVIEW for o in outcomes),
    )


# --- what the customer sees ------------------------------------------------------------------------


async def overview(engine: AsyncEngine, user_id: uuid.UUID, gates: list[dict[str, Any]]) -> KycOverview:
    """Tier, submissions, what the next tier needs, and the tier's 24 h limits with what is used."""
    async with engine.connect() as conn:
        tier = (
            await conn.execute(text("SELECT kyc_tier FROM users WHERE id = :u"), {"u": user_id})
        ).scalar_one()
        rows = (
            await conn.execute(
                text(
                    "SELECT id, tier, status, vendor_result FROM kyc_submissions WHERE user_id = :u "
                    "ORDER BY created_at DESC LIMIT 20"
                ),
                {"u": user_id},
            )
        ).all()
        traded = await trading_used(conn, user_id=user_id, order_id=uuid.UUID(int=0))
        withdrawn = await limits.rolling_24h_sum(
            conn,
            table="withdrawals",
            amount_column="notional_gbp",
            user_id=user_id,
            statuses=limits.COUNTED_WITHDRAWAL_STATUSES,
        )
    submissions = []
    for r in rows:
        status = KycStatus(r.status)
        vendor = VendorOutcome.model_validate(r.vendor_result) if r.vendor_result else None
        submissions.append(
            SubmissionOut(id=r.id, tier=r.tier, status=r.status, message=customer_message(status, vendor))
        )
    return KycOverview(
        tier=tier,
        status=submissions[0].status if submissions else "NONE",
        submissions=submissions,
        next_tier=NEXT_TIER_NEEDS.get(tier + 1),
        limits={
            "trading": _usage(limits.limit_for(tier, limits.TRADING_LIMITS_GBP), traded),
            "withdrawal": _usage(limits.limit_for(tier, limits.WITHDRAWAL_LIMITS_GBP), withdrawn),
        },
        gates=gates,
    )


def _usage(limit: Decimal, used: Decimal) -> LimitUsage:
    return LimitUsage(limit=limit, used=used, remaining=max(Decimal(0), limit - used))


async def withdraw_submission(engine: AsyncEngine, submission_id: uuid.UUID) -> None:
    """Undo a submission whose saga could not be started (Temporal down): the customer simply retries."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM kyc_evidence WHERE submission_id = :id"), {"id": submission_id})
        await conn.execute(
            text("DELETE FROM kyc_submissions WHERE id = :id AND status = 'PENDING'"), {"id": submission_id}
        )
