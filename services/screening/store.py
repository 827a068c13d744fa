"""Writing a list load into PostgreSQL: add new listings, version changed ones, delist removed ones.

A load is one transaction per source. For each entity the content hash decides: same hash, nothing
happens (its version and its reviewers' dismissals stay valid); a new hash bumps `version`, keeps the
old content in `sanctions_entity_versions` and rewrites its screenable names and wallet addresses; a
listing the new file no longer carries is marked `listed = false` and its names and addresses go, so it
is no longer screened. The result names the entities that changed, which is what re-screening needs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.screening import ListedEntity, ListSource
from services.screening.crypto import address_key
from services.screening.matching import normalise_for_blocking


class SuspiciousListUpdate(Exception):
    """A load would delist more than `max_removed_share` of a source's listings: most likely a truncated
    or failed download, not the authority lifting half its sanctions. Nothing was written; check the file,
    then load again with a higher share if the change is real."""


@dataclass
class LoadResult:
    source: ListSource
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    touched_entity_ids: list[uuid.UUID] = field(default_factory=list)
    update_id: uuid.UUID | None = None

    @property
    def any_change(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts as one list per column: a bulk write is one `unnest(...)` statement, not a round trip
    per row (a full OFAC load is ~45,000 rows)."""
    return {key: [row[key] for row in rows] for key in rows[0]}


async def _write_names_and_addresses(
    conn: AsyncConnection, rows: Sequence[tuple[uuid.UUID, ListedEntity]]
) -> None:
    names = [
        {
            "entity_id": entity_id,
            "name": listed.name,
            "norm": normalise_for_blocking(listed.name),
            "kind": listed.kind,
            "quality": listed.quality,
        }
        for entity_id, entity in rows
        for listed in entity.names
    ]
    names = [n for n in names if n["norm"]]
    if names:
        await conn.execute(
            text(
                "INSERT INTO sanctions_names (entity_id, name, norm, kind, quality) "
                "SELECT * FROM unnest(CAST(:entity_id AS uuid[]), CAST(:name AS text[]), "
                "CAST(:norm AS text[]), "
                "CAST(:kind AS text[]), CAST(:quality AS text[]))"
            ),
            _columns(names),
        )
        # Keys are computed by the same SQL function the query side uses, so both always agree.
        await conn.execute(
            text(
                "INSERT INTO sanctions_name_keys (key, name_id, entity_id) "
                "SELECT DISTINCT metaphone(tok, 8), n.id, n.entity_id "
                "FROM sanctions_names n, unnest(string_to_array(n.norm, ' ')) AS tok "
                "WHERE n.entity_id = ANY(:ids) AND length(tok) > 1 AND metaphone(tok, 8) <> ''"
            ),
            {"ids": list({n["entity_id"] for n in names})},
        )
    addresses = {
        (address_key(a.address), entity_id): {
            "address_key": address_key(a.address),
            "entity_id": entity_id,
            "currency": a.currency,
            "address": a.address,
        }
        for entity_id, entity in rows
        for a in entity.crypto_addresses
    }
    if addresses:
        await conn.execute(
            text(
                "INSERT INTO sanctions_crypto_addresses (address_key, entity_id, currency, address) "
                "SELECT * FROM unnest(CAST(:address_key AS text[]), CAST(:entity_id AS uuid[]), "
                "CAST(:currency AS text[]), CAST(:address AS text[]))"
            ),
            _columns(list(addresses.values())),
        )


@dataclass
class _ListDiff:
    """What a load changes, worked out before anything is written."""

    inserts: list[dict[str, object]] = field(default_factory=list)
    updates: list[dict[str, object]] = field(default_factory=list)
    versions: list[dict[str, object]] = field(default_factory=list)
    rewrite: list[tuple[uuid.UUID, ListedEntity]] = field(default_factory=list)
    removed: list[uuid.UUID] = field(default_factory=list)

    @property
    def stale(self) -> list[uuid.UUID]:
        """Entities whose old names and addresses go: the changed ones and the delisted ones."""
        inserted = {i["id"] for i in self.inserts}
        return [entity_id for entity_id, _ in self.rewrite if entity_id not in inserted] + self.removed


def _row_values(entity: ListedEntity) -> dict[str, object]:
    return {
        "entity_type": entity.entity_type,
        "topic": entity.topic.value,
        "programmes": json.dumps(entity.programmes),
        "hash": entity.content_hash(),
        "data": entity.model_dump_json(),
    }


def _diff(
    source: ListSource,
    incoming: dict[str, ListedEntity],
    existing: dict[str, Any],
    result: LoadResult,
    max_removed_share: float,
) -> _ListDiff:
    """Compare the file with the stored copy by content hash; count what changes into `result`.
    `SuspiciousListUpdate` when it would delist more than `max_removed_share` of the listings."""
    diff = _ListDiff()
    for source_id, entity in incoming.items():
        values = _row_values(entity)
        row = existing.get(source_id)
        if row is None:
            entity_id = uuid.uuid4()
            diff.inserts.append({"id": entity_id, "source": source.value, "source_id": source_id, **values})
            diff.versions.append(
                {"id": entity_id, "version": 1, "hash": values["hash"], "data": values["data"]}
            )
            diff.rewrite.append((entity_id, entity))
            result.added += 1
            result.touched_entity_ids.append(entity_id)
        elif row.content_hash != values["hash"] or not row.listed:
            version = row.version + 1
            diff.updates.append({"id": row.id, "version": version, **values})
            diff.versions.append(
                {"id": row.id, "version": version, "hash": values["hash"], "data": values["data"]}
            )
            diff.rewrite.append((row.id, entity))
            result.changed += 1
            result.touched_entity_ids.append(row.id)
        else:
            result.unchanged += 1
    diff.removed = [row.id for sid, row in existing.items() if sid not in incoming and row.listed]
    listed_before = sum(1 for row in existing.values() if row.listed)
    if listed_before and len(diff.removed) > max_removed_share * listed_before:
        raise SuspiciousListUpdate(
            f"{source}: the update delists {len(diff.removed)} of {listed_before} listings"
        )
    result.removed = len(diff.removed)
    result.touched_entity_ids.extend(diff.removed)
    return diff


async def _write_entities(conn: AsyncConnection, diff: _ListDiff) -> None:
    """New listings, new versions of changed ones (the old content kept), delistings; then the screenable
    names and addresses of what changed, rewritten."""
    if diff.inserts:
        await conn.execute(
            text(
                "INSERT INTO sanctions_entities "
                "(id, source, source_id, entity_type, topic, programmes, version, content_hash, data) "
                "SELECT u.id, u.source, u.source_id, u.entity_type, u.topic, "
                "ARRAY(SELECT jsonb_array_elements_text(CAST(u.programmes AS jsonb))), 1, u.hash, "
                "CAST(u.data AS jsonb) "
                "FROM unnest(CAST(:id AS uuid[]), CAST(:source AS text[]), CAST(:source_id AS text[]), "
                "CAST(:entity_type AS text[]), CAST(:topic AS text[]), CAST(:programmes AS text[]), "
                "CAST(:hash AS text[]), CAST(:data AS text[])) "
                "AS u(id, source, source_id, entity_type, topic, programmes, hash, data)"
            ),
            _columns(diff.inserts),
        )
    if diff.updates:
        await conn.execute(
            text(
                "UPDATE sanctions_entities e SET entity_type = u.entity_type, topic = u.topic, "
                "programmes = ARRAY(SELECT jsonb_array_elements_text(CAST(u.programmes AS jsonb))), "
                "version = u.version, content_hash = u.hash, data = CAST(u.data AS jsonb), "
                "listed = true, "
                "updated_at = now() "
                "FROM unnest(CAST(:id AS uuid[]), CAST(:entity_type AS text[]), CAST(:topic AS text[]), "
                "CAST(:programmes AS text[]), CAST(:version AS int[]), CAST(:hash AS text[]), "
                "CAST(:data AS text[])) AS u(id, entity_type, topic, programmes, version, hash, data) "
                "WHERE e.id = u.id"
            ),
            _columns(diff.updates),
        )
    if diff.versions:
        await conn.execute(
            text(
                "INSERT INTO sanctions_entity_versions (entity_id, version, content_hash, data) "
                "SELECT u.id, u.version, u.hash, CAST(u.data AS jsonb) "
                "FROM unnest(CAST(:id AS uuid[]), CAST(:version AS int[]), CAST(:hash AS text[]), "
                "CAST(:data AS text[])) AS u(id, version, hash, data)"
            ),
            _columns(diff.versions),
        )
    stale = diff.stale
    if stale:
        for table in ("sanctions_name_keys", "sanctions_names", "sanctions_crypto_addresses"):
            await conn.execute(text(f"DELETE FROM {table} WHERE entity_id = ANY(:ids)"), {"ids": stale})
    if diff.removed:
        await conn.execute(
            text("UPDATE sanctions_entities SET listed = false, updated_at = now() WHERE id = ANY(:ids)"),
            {"ids": diff.removed},
        )
    await _write_names_and_addresses(conn, diff.rewrite)


async def load_list(
    engine: AsyncEngine,
    source: ListSource,
    entities: Sequence[ListedEntity],
    *,
    max_removed_share: float = 0.5,
) -> LoadResult:
    """Bring the stored copy of `source` to exactly `entities`, versioning what changed."""
    result = LoadResult(source=source)
    incoming: dict[str, ListedEntity] = {}
    for entity in entities:
        if entity.source is not source:
            raise ValueError(f"entity {entity.source_id} is from {entity.source}, not {source}")
        incoming[entity.source_id] = entity

    async with engine.begin() as conn:
        # One load per source at a time; a concurrent second load waits instead of interleaving.
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"sanctions:{source}"}
        )
        existing = {
            row.source_id: row
            for row in (
                await conn.execute(
                    text(
                        "SELECT id, source_id, version, content_hash, listed FROM sanctions_entities "
                        "WHERE source = :source"
                    ),
                    {"source": source.value},
                )
            ).all()
        }
        await _write_entities(conn, _diff(source, incoming, existing, result, max_removed_share))
        update_id = uuid.uuid4()
        await conn.execute(
            text(
                "INSERT INTO sanctions_list_updates (id, source, added, changed, removed, unchanged) "
                "VALUES (:id, :source, :added, :changed, :removed, :unchanged)"
            ),
            {
                "id": update_id,
                "source": source.value,
                "added": result.added,
                "changed": result.changed,
                "removed": result.removed,
                "unchanged": result.unchanged,
            },
        )
        result.update_id = update_id
    if result.any_change:
        # Fresh statistics after a bulk change, so the planner keeps using the trigram index.
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE sanctions_names"))
            await conn.execute(text("ANALYZE sanctions_entities"))
            await conn.execute(text("ANALYZE sanctions_name_keys"))
            await conn.commit()
    return result
