"""The append-only, hash-chained audit log: who did what to what, from where (docs/architecture.md §7).

Every row is chained at commit, in commit order, by a deferred trigger (migration 0033): `seq` numbers the
chain without gaps, `prev_hash` is the previous row's `hash`, and `hash` is SHA-256 over `prev_hash` and
the row's fields (`audit_row_hash` in SQL). Writers only insert (`services.audit.record`); the trigger
chains whatever any writer inserted, raw SQL included, so no path can leave a row out of the chain.
A transaction that writes audit rows must run at READ COMMITTED (the default): at REPEATABLE READ or
SERIALIZABLE the chaining's row lock on `audit_chain_head` fails with a serialization error whenever
another writer committed first.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class AuditLog(SQLModel, table=True):
    """Who did what to what. Append-only: the database refuses UPDATE and DELETE (except its own chaining)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id"),
        Index("ix_audit_log_actor_created", "actor_id", "created_at"),
        Index("ix_audit_log_action_created", "action", "created_at"),
        Index("ux_audit_log_seq", "seq", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    actor_id: uuid.UUID | None = None
    actor_type: str = Field(default="system", max_length=20, sa_column_kwargs={"server_default": "system"})
    action: str = Field(max_length=100)
    target_type: str | None = Field(default=None, max_length=50)
    target_id: str | None = Field(default=None, max_length=100)
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    # Set by the chaining trigger at commit; NULL only inside the writing transaction.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    prev_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class AuditChainHead(SQLModel, table=True):
    """The chain's one head row (id 1): the last chained row's `seq` and `hash`. Its row lock orders the
    chaining of concurrent commits; verification compares it with the last row (a cut tail shows)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="audit_chain_head_id_check"),)

    id: int = Field(default=1, primary_key=True)
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
