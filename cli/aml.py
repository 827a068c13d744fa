"""`python -m cli aml …`: the AML rule set versions from the command line.

- `aml versions`: every version with its status and mode;
- `aml load <file.json>`: store a rule set file as a draft (validated first);
- `aml publish <version>`: publish a draft (immutable from then on; a live one retires the live one);
- `aml retire <version>`: stop running a published version;
- `aml backtest <version> --since <iso date> [--user <id>]`: what it would have raised on the history
  since then, next to what the live version raised;
- `aml records <user id>`: a customer's AML cases and alerts with their retention dates.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text


def add_commands(sub: Any) -> None:
    """Register `aml` and its subcommands on the CLI's subparsers."""
    p = sub.add_parser("aml", help="AML rule set versions: list, load, publish, retire, backtest")
    aml = p.add_subparsers(dest="aml_command", required=True)
    aml.add_parser("versions", help="every rule set version with its status and mode")
    q = aml.add_parser("load", help="store a rule set file (JSON) as a draft version")
    q.add_argument("file", type=Path)
    q = aml.add_parser("publish", help="publish a draft version (immutable from then on)")
    q.add_argument("version")
    q = aml.add_parser("retire", help="stop running a published version")
    q.add_argument("version")
    q = aml.add_parser("backtest", help="replay the history since a date under a version")
    q.add_argument("version")
    q.add_argument("--since", required=True, type=_iso, help="ISO date or time, e.g. 2026-11-01")
    q.add_argument("--user", type=uuid.UUID, default=None, help="only this customer's transactions")
    q = aml.add_parser("records", help="a customer's AML cases and alerts, with their retention dates")
    q.add_argument("user_id", type=uuid.UUID)


def _iso(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value}") from e
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def run(args: argparse.Namespace, database_url: str) -> None:
    """Carry out one `aml` subcommand, printing its result."""
    print("\n".join(asyncio.run(_run(args, database_url))))


async def _run(args: argparse.Namespace, database_url: str) -> list[str]:
    from models.database import async_engine
    from services.aml import versions
    from services.aml.backtest import backtest
    from services.aml.rules import load_file
    from services.errors import DomainError

    engine = async_engine(database_url, pool_size=1, max_overflow=0)
    try:
        if args.aml_command == "backtest":
            report = await backtest(engine, args.version, args.since, user_id=args.user)
            return list(report.lines())
        async with engine.begin() as conn:
            if args.aml_command == "versions":
                rows = (
                    await conn.execute(
                        text(
                            "SELECT version, status, mode, published_at FROM aml_rule_versions "
                            "ORDER BY created_at"
                        )
                    )
                ).all()
                return [f"{r.version}\t{r.status}\t{r.mode}\t{r.published_at or '-'}" for r in rows]
            if args.aml_command == "records":
                return await _records(conn, args.user_id)
            if args.aml_command == "load":
                rule_set = load_file(args.file)
                await versions.create_draft(conn, rule_set)
                return [f"{rule_set.version}: draft ({rule_set.mode.value})"]
            if args.aml_command == "publish":
                await versions.publish(conn, args.version)
                return [f"{args.version}: published"]
            if args.aml_command == "retire":
                await versions.retire(conn, args.version)
                return [f"{args.version}: retired"]
    except DomainError as e:
        sys.exit(str(e))
    finally:
        await engine.dispose()
    raise AssertionError(args.aml_command)


async def _records(conn: Any, user_id: uuid.UUID) -> list[str]:
    """Cases then alerts, each with the date it may be deleted ("kept": the relationship goes on)."""
    cases = (
        await conn.execute(
            text(
                "SELECT id, status, outcome, opened_at, retention_until FROM aml_cases WHERE user_id = :u "
                "ORDER BY opened_at"
            ),
            {"u": user_id},
        )
    ).all()
    alerts = (
        await conn.execute(
            text(
                "SELECT a.created_at, a.subject_type, a.subject_id, a.rule_code, a.outcome, a.shadow, "
                "a.retention_until, v.version FROM aml_alerts a JOIN aml_rule_versions v "
                "ON v.id = a.rule_version_id WHERE a.user_id = :u ORDER BY a.created_at"
            ),
            {"u": user_id},
        )
    ).all()
    kept = "kept (relationship ongoing)"
    lines = [f"case {c.id}\t{c.status}\t{c.outcome or '-'}\topened {c.opened_at:%Y-%m-%d}\t"
             f"retain until {c.retention_until or kept}" for c in cases]  # fmt: skip
    lines += [
        f"alert {a.created_at:%Y-%m-%d %H:%M}\t{a.subject_type} {a.subject_id}\t{a.rule_code}\t{a.outcome}"
        f"{' (shadow ' + a.version + ')' if a.shadow else ''}\tretain until {a.retention_until or kept}"
        for a in alerts
    ]
    return lines or [f"no AML records for {user_id}"]
