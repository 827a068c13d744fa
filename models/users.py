"""Users: customers and staff. Staff carry roles; customers carry a KYC tier (docs/architecture.md §C.6,
§3)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, String, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from models.columns import timestamp
from models.sealed import Sealed


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class StaffRole(StrEnum):
    SUPPORT = "support"
    APPROVER = "approver"
    OPS = "ops"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("kyc_tier BETWEEN 0 AND 3", name="ck_users_kyc_tier"),
        CheckConstraint("status IN ('ACTIVE', 'FROZEN', 'SUSPENDED', 'CLOSED')", name="ck_users_status"),
        CheckConstraint(
            "roles <@ ARRAY['support', 'approver', 'ops', 'compliance', 'admin']::text[]",
            name="ck_users_roles",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=20)
    kyc_tier: int = Field(default=0, index=True, sa_column_kwargs={"server_default": "0"})
    status: str = Field(
        default=UserStatus.ACTIVE, max_length=20, sa_column_kwargs={"server_default": "ACTIVE"}
    )
    roles: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    email_verified: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    twofa_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    # The TOTP seed, encrypted at rest (`models/sealed.py`); plain text in Python.
    twofa_secret: str | None = Field(default=None, sa_column=Column(Sealed(512), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
    last_login: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
