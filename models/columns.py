"""Column factories shared by the tables.

SQLAlchemy `Column` objects belong to one table, so each table asks for a fresh one here.
Money is `NUMERIC(36,18)` everywhere (the per-asset scale is enforced by the ledger, not the type);
time is `timestamptz`; keys are UUIDs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, DateTime, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB

MONEY = Numeric(36, 18, asdecimal=True)


def money(*, nullable: bool = False, default: Any = None, server_default: str | None = None) -> Any:
    return Column(
        MONEY,
        nullable=nullable,
        default=default,
        server_default=server_default,
    )


def timestamp(*, nullable: bool = False, now: bool = True, index: bool = False) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if now else None,
        index=index,
    )


def jsonb(*, nullable: bool = True, name: str | None = None) -> Any:
    if name is not None:
        return Column(name, JSONB, nullable=nullable)
    return Column(JSONB, nullable=nullable)


def text(*, nullable: bool = True) -> Any:
    return Column(Text, nullable=nullable)
