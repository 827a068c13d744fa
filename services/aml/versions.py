"""Rule set versions in the database: the seed files loaded, drafts published, the versions in force.

A published version is immutable (its label and rules; the database refuses the update, migration
0029), so an alert always names the exact rules that raised it. At most one published version is live
(a partial unique index); publishing a live version retires the one it replaces in the same
transaction. Published shadow versions run next to the live one and only record alerts.

The loader is synchronous SQL on a `Connection` so that `devstack.migrate` can call it after upgrading,
and async callers run it with `AsyncConnection.run_sync`.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.aml import RuleVersionMode, RuleVersionStatus
from services.aml.rules import RuleSet, load_file, seed_files
from services.errors import DomainError

log = logging.getLogger("services.aml.versions")


class RuleVersionNotFound(DomainError):
    """No rule set version has that label: check `python -m cli aml versions`."""

    default_code = "aml_rule_version_not_found"
    status = 404


class RuleVersionImmutable(DomainError):
    """The version is published or retired: change the rules in a new version."""

    default_code = "aml_rule_version_immutable"
    status = 409


@dataclass(frozen=True)
class ActiveVersion:
    """A published version as the evaluator needs it."""

    id: uuid.UUID
    rules: RuleSet

    @property
    def shadow(self) -> bool:
        return self.rules.mode == RuleVersionMode.SHADOW

    @property
    def stored(self) -> dict[str, Any]:
        return self.rules.stored()


def load_seed_versions(conn: Connection, paths: list[Path] | None = None) -> list[str]:
    """Insert each seed file's version (published) unless its label exists; the labels inserted.

    A live seed is only published live when no other version is live (an operator's newer live version
    is never displaced by a restart); otherwise it is stored as a draft."""
    inserted = []
    for path in paths if paths is not None else seed_files():
        rule_set = load_file(path)
        exists = conn.execute(
            text("SELECT rules FROM aml_rule_versions WHERE version = :v"), {"v": rule_set.version}
        ).first()
        if exists is not None:
            if exists[0] != rule_set.stored():
                log.warning(
                    "AML seed %s differs from the stored version: a change needs a new label", path.name
                )
            continue
        live_taken = (
            rule_set.mode == RuleVersionMode.LIVE
            and conn.execute(
                text("SELECT 1 FROM aml_rule_versions WHERE status = 'published' AND mode = 'live'")
            ).first()
            is not None
        )
        status = RuleVersionStatus.DRAFT if live_taken else RuleVersionStatus.PUBLISHED
        result = conn.execute(
            text(
                "INSERT INTO aml_rule_versions (id, version, status, mode, published_at, rules) "
                "VALUES (:id, :v, :s, :m, CASE WHEN :pub THEN now() END, CAST(:r AS jsonb)) "
                "ON CONFLICT (version) DO NOTHING"
            ),
            {
                "id": uuid.uuid4(),
                "v": rule_set.version,
                "s": status.value,
                "pub": status == RuleVersionStatus.PUBLISHED,
                "m": rule_set.mode.value,
                "r": json.dumps(rule_set.stored()),
            },
        )
        if result.rowcount:
            inserted.append(rule_set.version)
    return inserted


async def ensure_seed_versions(conn: AsyncConnection) -> list[str]:
    return await conn.run_sync(load_seed_versions)


async def create_draft(conn: AsyncConnection, rule_set: RuleSet) -> uuid.UUID:
    """Store `rule_set` as a draft (to be published, or backtested first)."""
    vid = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO aml_rule_versions (id, version, status, mode, rules) "
            "VALUES (:id, :v, 'draft', :m, CAST(:r AS jsonb))"
        ),
        {"id": vid, "v": rule_set.version, "m": rule_set.mode.value, "r": json.dumps(rule_set.stored())},
    )
    return vid


async def publish(conn: AsyncConnection, version: str) -> None:
    """Publish a draft: from now on it is immutable. A live one retires the live version it replaces."""
    row = (
        await conn.execute(
            text("SELECT id, status, mode FROM aml_rule_versions WHERE version = :v FOR UPDATE"),
            {"v": version},
        )
    ).first()
    if row is None:
        raise RuleVersionNotFound(f"no rule set version {version!r}")
    if row.status != RuleVersionStatus.DRAFT:
        raise RuleVersionImmutable(f"version {version!r} is {row.status}")
    if row.mode == RuleVersionMode.LIVE:
        await conn.execute(
            text(
                "UPDATE aml_rule_versions SET status = 'retired' WHERE status = 'published' AND mode = 'live'"
            )
        )
    await conn.execute(
        text("UPDATE aml_rule_versions SET status = 'published', published_at = now() WHERE id = :id"),
        {"id": row.id},
    )


async def retire(conn: AsyncConnection, version: str) -> None:
    """Stop running a published version (its alerts stay, naming it)."""
    done = await conn.execute(
        text("UPDATE aml_rule_versions SET status = 'retired' WHERE version = :v AND status = 'published'"),
        {"v": version},
    )
    if not done.rowcount:
        raise RuleVersionNotFound(f"no published rule set version {version!r}")


async def active_versions(conn: AsyncConnection) -> list[ActiveVersion]:
    """The published versions, live first: the live one decides, shadow ones only record alerts."""
    rows = (
        await conn.execute(
            text(
                "SELECT id, version, mode, rules FROM aml_rule_versions WHERE status = 'published' "
                "ORDER BY mode = 'live' DESC, published_at"
            )
        )
    ).all()
    return [ActiveVersion(r.id, RuleSet.from_row(r.version, r.mode, r.rules)) for r in rows]


async def version_by_label(conn: AsyncConnection, version: str) -> ActiveVersion:
    row = (
        await conn.execute(
            text("SELECT id, version, mode, rules FROM aml_rule_versions WHERE version = :v"), {"v": version}
        )
    ).first()
    if row is None:
        raise RuleVersionNotFound(f"no rule set version {version!r}")
    return ActiveVersion(row.id, RuleSet.from_row(row.version, row.mode, row.rules))
