"""Screening subjects against the stored lists: block candidates in PostgreSQL, score them in Python.

Blocking: each subject's name is normalised like the stored names (`normalise_for_blocking`) and the
trigram index on `sanctions_names.norm` returns the most similar names above
`screening_block_similarity` (pg_trgm works per word, so token order does not matter). Many subjects go
in one query (`unnest ... CROSS JOIN LATERAL`), so a batch costs one round trip.

Scoring (0-100): the best name comparison over the entity's names (`matching.compare_names`), minus 5
for a weak alias, then the qualifiers: date of birth exact +5, year agrees +2, contradicts -15;
nationality agrees +2, differs -5. A qualifier only counts when both sides know it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.screening import (
    Action,
    Match,
    NameMatchExplanation,
    PartialDate,
    Subject,
    Topic,
)
from services.screening.dates import DobAgreement, compare_dob
from services.screening.matching import analyse, compare_names, normalise_for_blocking

WEAK_ALIAS_PENALTY = 5
DOB_ADJUSTMENT = {DobAgreement.EXACT: 5, DobAgreement.YEAR: 2, DobAgreement.MISMATCH: -15, DobAgreement.UNKNOWN: 0}
NATIONALITY_MATCH = 2
NATIONALITY_MISMATCH = -5


@dataclass(frozen=True)
class Bands:
    review: int
    freeze: int

    def action(self, score: int) -> Action:
        if score >= self.freeze:
            return Action.FREEZE_PENDING_REVIEW
        if score >= self.review:
            return Action.REVIEW
        return Action.CLEAR


@dataclass
class Candidate:
    entity_id: uuid.UUID
    entity_version: int
    source: str
    source_id: str
    entity_type: str
    topic: str
    data: dict[str, Any]
    names: list[tuple[str, str, str]]  # (name, kind, quality) of the blocked names of this entity


_BLOCK_SQL = text(
    """
    SELECT q.i, e.id, e.version, e.source, e.source_id, e.entity_type, e.topic, e.data,
           c.name, c.kind, c.quality
    FROM unnest(CAST(:norms AS text[])) WITH ORDINALITY AS q(norm, i)
    CROSS JOIN LATERAL (
        SELECT n.entity_id, n.name, n.kind, n.quality
        FROM sanctions_names n
        WHERE n.norm % q.norm
        ORDER BY similarity(n.norm, q.norm) DESC
        LIMIT :per_name
    ) c
    JOIN sanctions_entities e ON e.id = c.entity_id AND e.listed
    """
)


async def block_candidates(
    engine: AsyncEngine, names: Sequence[str], *, similarity: float, per_name: int
) -> list[dict[uuid.UUID, Candidate]]:
    """For each name, the listings whose names are trigram-similar to it (one query for the batch)."""
    norms = [normalise_for_blocking(n) or "-" for n in names]
    out: list[dict[uuid.UUID, Candidate]] = [{} for _ in names]
    async with engine.connect() as conn:
        await conn.execute(text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"), {"t": str(similarity)})
        rows = (await conn.execute(_BLOCK_SQL, {"norms": norms, "per_name": per_name})).all()
        await conn.rollback()
    for row in rows:
        bucket = out[row.i - 1]
        candidate = bucket.get(row.id)
        if candidate is None:
            candidate = Candidate(
                entity_id=row.id,
                entity_version=row.version,
                source=row.source,
                source_id=row.source_id,
                entity_type=row.entity_type,
                topic=row.topic,
                data=row.data,
                names=[],
            )
            bucket[row.id] = candidate
        candidate.names.append((row.name, row.kind, row.quality))
    return out


def _nationality_agrees(customer: str, listed: list[str]) -> bool:
    mine = customer.strip().casefold()
    return any(mine == n.strip().casefold() or mine in n.casefold() or n.casefold() in mine for n in listed)


def score_candidate(subject: Subject, candidate: Candidate, bands: Bands) -> Match | None:
    """The best-scoring name of a candidate listing for this subject, with the qualifiers applied."""
    query = analyse(subject.name, "individual")
    if query is None:
        return None
    best: tuple[float, str, str, str, Any] | None = None
    # Every name of the listing is compared, not only the blocked one: an alias may score higher.
    all_names = [(n["name"], n["kind"], n["quality"]) for n in candidate.data.get("names", [])] or candidate.names
    for name, kind, quality in all_names:
        listed = analyse(name, candidate.entity_type)
        if listed is None:
            continue
        comparison = compare_names(query, listed)
        points = comparison.score * 100 - (WEAK_ALIAS_PENALTY if quality == "weak" else 0)
        if best is None or points > best[0]:
            best = (points, name, kind, quality, comparison)
    if best is None:
        return None
    points, name, kind, quality, comparison = best

    qualifiers: list[dict[str, Any]] = []
    dobs = [PartialDate.model_validate(d) for d in candidate.data.get("dates_of_birth", [])]
    agreement, which = compare_dob(subject.date_of_birth, dobs)
    if agreement is not DobAgreement.UNKNOWN:
        points += DOB_ADJUSTMENT[agreement]
        qualifiers.append(
            {
                "qualifier": "date_of_birth",
                "customer": subject.date_of_birth.isoformat() if subject.date_of_birth else None,
                "listed": [d.label() for d in dobs],
                "closest": which.label() if which else None,
                "agreement": agreement.value,
                "adjustment": DOB_ADJUSTMENT[agreement],
            }
        )
    nationalities = candidate.data.get("nationalities", [])
    if subject.nationality and nationalities:
        agrees = _nationality_agrees(subject.nationality, nationalities)
        adjustment = NATIONALITY_MATCH if agrees else NATIONALITY_MISMATCH
        points += adjustment
        qualifiers.append(
            {
                "qualifier": "nationality",
                "customer": subject.nationality,
                "listed": nationalities,
                "agreement": "MATCH" if agrees else "MISMATCH",
                "adjustment": adjustment,
            }
        )
    score = max(0, min(100, round(points)))
    names = candidate.data.get("names", [])
    return Match(
        entity_id=candidate.entity_id,
        entity_version=candidate.entity_version,
        source=candidate.source,
        source_id=candidate.source_id,
        topic=Topic(candidate.topic),
        primary_name=names[0]["name"] if names else name,
        score=score,
        action=bands.action(score),
        name=NameMatchExplanation(
            query_name=subject.name,
            listed_name=name,
            listed_name_kind=kind,
            listed_name_quality=quality,
            name_score=round(comparison.score, 4),
            token_pairs=[p.as_dict() for p in comparison.pairs],
            unmatched_query_tokens=comparison.unmatched_query,
            unmatched_listed_tokens=comparison.unmatched_listed,
        ),
        qualifiers=qualifiers,
    )


async def find_matches(
    engine: AsyncEngine, subjects: Sequence[Subject], bands: Bands, *, similarity: float, per_name: int
) -> list[list[Match]]:
    """For each subject, the listings scoring at or above the review band, best first."""
    blocked = await block_candidates(engine, [s.name for s in subjects], similarity=similarity, per_name=per_name)
    results: list[list[Match]] = []
    for subject, candidates in zip(subjects, blocked, strict=True):
        matches = [m for c in candidates.values() if (m := score_candidate(subject, c, bands)) is not None]
        matches = [m for m in matches if m.score >= bands.review]
        matches.sort(key=lambda m: m.score, reverse=True)
        results.append(matches)
    return results
