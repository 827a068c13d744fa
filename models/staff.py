"""Staff console sessions (api/console): separate from customers' token sessions (`auth_sessions`), so a
customer token can never open the console and a console cookie can never call the customer API."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, Uuid
from sqlmodel import Field, SQLModel

from models.columns import timestamp


class StaffSession(SQLModel, table=True):
    """One staff login. The cookie holds a random token; only its SHA-256 is stored. `csrf_token` is the
    synchroniser token every state-changing form of this session must carry."""

    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_user", "user_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("users.id"), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=255)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    last_seen_at: datetime | None = Field(default=None, sa_column=timestamp())
    expires_at: datetime = Field(sa_column=timestamp(now=False))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
