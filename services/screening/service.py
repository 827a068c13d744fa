"""Screening customers and recording outcomes as `aml_checks` rows; reviewers' dismissals; re-screening.

The calls other areas make:

- `set_subject` when KYC tier 1 captures (or the customer changes) name, date of birth or nationality,
  then `screen_customer(..., record=ALWAYS)`.
- `load_and_rescreen` from the daily list-update job: loads one list and re-screens *every* customer
  with a subject, recording a new `aml_checks` row only where the outcome changed (never "a check
  already exists, skip").
- `dismiss_match` from the compliance review: the reviewer's "no hit" for (customer, entity, entity
  version); that listing is not raised again for that customer until its content changes.
- `services.screening.crypto.listed_wallets` for every crypto withdrawal destination.

Outcome of one check: HIT when any undismissed listing scores in the review band or above (`details`
says REVIEW or FREEZE_PENDING_REVIEW and carries every match with its explanation); FALSE_POSITIVE when
the only listings that would hit are dismissed at their current version; CLEAR otherwise. A FREEZE
outcome sets the customer's status to FROZEN (only from ACTIVE) and writes the audit log; unfreezing is
the reviewer's decision, not this module's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from config import Settings
from models.screening import (
    Action,
    CheckResult,
    CheckType,
    ListedEntity,
    ListSource,
    Match,
    ScreeningOutcome,
    Subject,
    Topic,
)
from services.alerts import audit
from services.screening.screener import Bands, find_matches
from services.screening.sources import load_source
from services.screening.store import LoadResult, load_list

PROVIDER = "internal-screening"
_TOPIC_CHECK = {Topic.SANCTION: CheckType.SANCTIONS, Topic.PEP: CheckType.PEP}


class RecordPolicy(StrEnum):
    ALWAYS = "ALWAYS"  # an explicit screening (tier 1, name change): always leaves a row
    ON_CHANGE = "ON_CHANGE"  # re-screening after a list update: a row only when the outcome changed


class NotAMatch(Exception):
    """The dismissal names a listing version that is no longer current: re-screen, then review the new one."""


@dataclass(frozen=True)
class ScreeningConfig:
    bands: Bands
    per_name: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ScreeningConfig:
        return cls(
            bands=Bands(
                review=settings.screening_review_threshold, freeze=settings.screening_freeze_threshold
            ),
            per_name=settings.screening_candidates_per_name,
        )


async def set_subject(
    engine: AsyncEngine,
    user_id: uuid.UUID,
    *,
    full_name: str,
    date_of_birth: date | None,
    nationality: str | None,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO screening_subjects (user_id, full_name, date_of_birth, nationality) "
                "VALUES (:u, :n, :d, :c) ON CONFLICT (user_id) DO UPDATE SET full_name = EXCLUDED.full_name, "
                "date_of_birth = EXCLUDED.date_of_birth, nationality = EXCLUDED.nationality, "
                "updated_at = now()"
            ),
            {"u": user_id, "n": full_name, "d": date_of_birth, "c": nationality},
        )


async def _dismissed(
    conn: AsyncConnection, user_ids: Sequence[uuid.UUID]
) -> set[tuple[uuid.UUID, uuid.UUID, int]]:
    rows = await conn.execute(
        text("SELECT user_id, entity_id, entity_version FROM screening_dismissals WHERE user_id = ANY(:ids)"),
        {"ids": list(user_ids)},
    )
    return {(r.user_id, r.entity_id, r.entity_version) for r in rows}


def _outcomes(
    user_id: uuid.UUID | None,
    subject: Subject,
    matches: list[Match],
    dismissed: set[tuple[uuid.UUID, uuid.UUID, int]],
) -> list[ScreeningOutcome]:
    outcomes = []
    for topic, check_type in _TOPIC_CHECK.items():
        mine = [m for m in matches if m.topic is topic]
        live = [m for m in mine if (user_id, m.entity_id, m.entity_version) not in dismissed]
        gone = [m for m in mine if (user_id, m.entity_id, m.entity_version) in dismissed]
        if live:
            result, action = CheckResult.HIT, max((m.action for m in live), key=_ACTION_RANK.__getitem__)
        elif gone:
            result, action = CheckResult.FALSE_POSITIVE, Action.CLEAR
        else:
            result, action = CheckResult.CLEAR, Action.CLEAR
        score = max((m.score for m in live), default=0)
        outcomes.append(
            ScreeningOutcome(
                subject=subject,
                check_type=check_type,
                result=result,
                action=action,
                score=score,
                matches=live,
                dismissed=gone,
            )
        )
    return outcomes


_ACTION_RANK = {Action.CLEAR: 0, Action.REVIEW: 1, Action.FREEZE_PENDING_REVIEW: 2}


async def screen_subjects(
    engine: AsyncEngine, subjects: Sequence[Subject], config: ScreeningConfig
) -> list[list[Match]]:
    """Matches for each subject, without recording anything (what the benchmark and previews call)."""
    return await find_matches(engine, subjects, config.bands, per_name=config.per_name)


def _signature(outcome: ScreeningOutcome) -> list[Any]:
    """What counts as "the outcome" when deciding whether it changed: result, action and which listing
    versions are raised or dismissed (scores alone moving a point do not make a new row)."""
    return [
        outcome.result.value,
        outcome.action.value,
        sorted(f"{m.entity_id}:{m.entity_version}" for m in outcome.matches),
        sorted(f"{m.entity_id}:{m.entity_version}" for m in outcome.dismissed),
    ]


async def _record(
    conn: AsyncConnection, user_id: uuid.UUID, outcome: ScreeningOutcome, policy: RecordPolicy, reason: str
) -> uuid.UUID | None:
    signature = _signature(outcome)
    # Two screenings of one customer at once (a list update and a name change) must not both read the same
    # "last outcome" and both record: they queue on the customer.
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"screening:{user_id}"})
    if policy is RecordPolicy.ON_CHANGE:
        last = (
            await conn.execute(
                text(
                    "SELECT details -> 'signature' AS signature FROM aml_checks "
                    "WHERE user_id = :u AND check_type = :t AND provider = :p "
                    "ORDER BY created_at DESC, id DESC LIMIT 1"
                ),
                {"u": user_id, "t": outcome.check_type.value, "p": PROVIDER},
            )
        ).first()
        if last is not None and last.signature == signature:
            return None
        if last is None and outcome.result is CheckResult.CLEAR:
            # Never screened before and still clear: nothing changed from "no finding".
            return None
    check_id = uuid.uuid4()
    details = {
        "action": outcome.action.value,
        "reason": reason,
        "signature": signature,
        "subject": outcome.subject.model_dump(mode="json"),
        "matches": [m.model_dump(mode="json") for m in outcome.matches],
        "dismissed": [m.model_dump(mode="json") for m in outcome.dismissed],
    }
    await conn.execute(
        text(
            "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
            "VALUES (:id, :u, :t, :p, :r, :s, CAST(:d AS jsonb))"
        ),
        {
            "id": check_id,
            "u": user_id,
            "t": outcome.check_type.value,
            "p": PROVIDER,
            "r": outcome.result.value,
            "s": outcome.score,
            "d": json.dumps(details),
        },
    )
    if outcome.action is Action.FREEZE_PENDING_REVIEW:
        frozen = await conn.execute(
            text(
                "UPDATE users SET status = 'FROZEN', updated_at = now() WHERE id = :u AND status = 'ACTIVE'"
            ),
            {"u": user_id},
        )
        if frozen.rowcount:
            await audit(
                conn, "screening.freeze_pending_review", actor_id=None, actor_type="system",
                target_type="user", target_id=str(user_id), aml_check_id=str(check_id), score=outcome.score,
            )  # fmt: skip
    return check_id


async def _subjects(
    conn: AsyncConnection, user_ids: Sequence[uuid.UUID] | None
) -> list[tuple[uuid.UUID, Subject]]:
    sql = "SELECT user_id, full_name, date_of_birth, nationality FROM screening_subjects"
    params: dict[str, Any] = {}
    if user_ids is not None:
        sql += " WHERE user_id = ANY(:ids)"
        params["ids"] = list(user_ids)
    rows = (await conn.execute(text(sql + " ORDER BY user_id"), params)).all()
    return [
        (r.user_id, Subject(name=r.full_name, date_of_birth=r.date_of_birth, nationality=r.nationality))
        for r in rows
    ]


async def screen_customers(
    engine: AsyncEngine,
    config: ScreeningConfig,
    *,
    user_ids: Sequence[uuid.UUID] | None = None,
    policy: RecordPolicy = RecordPolicy.ALWAYS,
    reason: str = "screening",
    batch_size: int = 500,
) -> dict[uuid.UUID, list[ScreeningOutcome]]:
    """Screen the given customers (or all with a subject), record per `policy`; returns every outcome."""
    async with engine.connect() as conn:
        subjects = await _subjects(conn, user_ids)
    results: dict[uuid.UUID, list[ScreeningOutcome]] = {}
    for start in range(0, len(subjects), batch_size):
        batch = subjects[start : start + batch_size]
        matches = await screen_subjects(engine, [s for _, s in batch], config)
        async with engine.begin() as conn:
            dismissed = await _dismissed(conn, [u for u, _ in batch])
            for (user_id, subject), found in zip(batch, matches, strict=True):
                outcomes = _outcomes(user_id, subject, found, dismissed)
                for outcome in outcomes:
                    await _record(conn, user_id, outcome, policy, reason)
                results[user_id] = outcomes
    return results


async def screen_customer(
    engine: AsyncEngine,
    config: ScreeningConfig,
    user_id: uuid.UUID,
    *,
    policy: RecordPolicy = RecordPolicy.ALWAYS,
) -> list[ScreeningOutcome]:
    outcomes = await screen_customers(engine, config, user_ids=[user_id], policy=policy)
    if user_id not in outcomes:
        raise LookupError(f"no screening subject for user {user_id}; call set_subject first")
    return outcomes[user_id]


@dataclass
class RescreenResult:
    load: LoadResult
    screened: int
    changed: int


async def load_and_rescreen(
    engine: AsyncEngine, config: ScreeningConfig, source: ListSource, entities: Sequence[ListedEntity]
) -> RescreenResult:
    """Apply a list update, then re-screen every customer, recording only outcomes that changed."""
    load = await load_list(engine, source, entities)
    async with engine.connect() as conn:
        before = (
            await conn.execute(text("SELECT count(*) FROM aml_checks WHERE provider = :p"), {"p": PROVIDER})
        ).scalar_one()
    outcomes = await screen_customers(
        engine, config, policy=RecordPolicy.ON_CHANGE, reason=f"list update {load.update_id}"
    )
    async with engine.connect() as conn:
        after = (
            await conn.execute(text("SELECT count(*) FROM aml_checks WHERE provider = :p"), {"p": PROVIDER})
        ).scalar_one()
    return RescreenResult(load=load, screened=len(outcomes), changed=int(after - before))


async def dismiss_match(
    engine: AsyncEngine,
    config: ScreeningConfig,
    *,
    user_id: uuid.UUID,
    entity_id: uuid.UUID,
    entity_version: int,
    reviewer_id: uuid.UUID,
    reason: str,
) -> list[ScreeningOutcome]:
    """Record a reviewer's "no hit" and re-screen the customer (which records FALSE_POSITIVE or CLEAR)."""
    if reviewer_id == user_id:
        raise PermissionError("a customer cannot review their own screening match")
    async with engine.begin() as conn:
        current = (
            await conn.execute(text("SELECT version FROM sanctions_entities WHERE id = :e"), {"e": entity_id})
        ).scalar_one_or_none()
        if current != entity_version:
            raise NotAMatch(f"entity {entity_id} is at version {current}, not {entity_version}")
        await conn.execute(
            text(
                "INSERT INTO screening_dismissals (user_id, entity_id, entity_version, reviewer_id, reason) "
                "VALUES (:u, :e, :v, :r, :why) ON CONFLICT DO NOTHING"
            ),
            {"u": user_id, "e": entity_id, "v": entity_version, "r": reviewer_id, "why": reason},
        )
        await audit(
            conn, "screening.dismiss", actor_id=reviewer_id, actor_type="staff", target_type="user",
            target_id=str(user_id), entity_id=str(entity_id), entity_version=entity_version, reason=reason,
        )  # fmt: skip
    return await screen_customer(engine, config, user_id, policy=RecordPolicy.ALWAYS)


async def refresh_lists(engine: AsyncEngine, config: ScreeningConfig, data_dir: Path) -> list[RescreenResult]:
    """Load every list whose files are in `data_dir` and re-screen after each (the daily job's body; the
    local stack points it at the shipped files, production at the day's downloads)."""
    results = []
    for source in (ListSource.OFAC_SDN, ListSource.UN_SC, ListSource.UK_FCDO):
        try:
            entities = load_source(data_dir, source)
        except FileNotFoundError:
            continue
        results.append(await load_and_rescreen(engine, config, source, entities))
    return results
