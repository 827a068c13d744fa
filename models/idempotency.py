"""Idempotency keys of the customer API (`Idempotency-Key` header on `POST /orders`).

One row per (customer, key): the fingerprint of the request it was first used with, whether that request
is still being processed, and the response it got, which a repeat is answered with.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class ApiIdempotencyKey(SQLModel, table=True):
    __tablename__ = "api_idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('in_flight', 'done')", name="ck_api_idempotency_keys_state"),
        Index("ix_api_idempotency_keys_created", "created_at"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    method: str = Field(max_length=10)
    path: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    state: str = Field(default="in_flight", max_length=10)
    response_status: int | None = None
    response_body: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
