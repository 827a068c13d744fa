"""Request rate-limit windows, shared by every API process (docs/architecture.md §7; `api/ratelimit.py`
applies them).

One row per key (`ip:<address>`, `user:<id>`, `withdrawal:<id>`): the hits of the last window counted in
buckets (`counts[1]` the newest, bucket `newest`), updated by the `rate_limit_hit` function in one round
trip. The table is UNLOGGED (migration 0026): a crash forgets the counts, which costs at most one window
of leniency and saves a WAL write on every request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from models.columns import timestamp


class RateLimitWindow(SQLModel, table=True):
    """The bucketed hit counts of one rate-limit key; past `expires_at` all of them have left the window
    and the row is swept."""

    __tablename__ = "rate_limit_windows"
    __table_args__ = (Index("ix_rate_limit_windows_expires_at", "expires_at"),)

    key: str = Field(sa_column=Column(String(120), primary_key=True))
    newest: int = Field(sa_column=Column(BigInteger, nullable=False))
    counts: list[int] = Field(sa_column=Column(ARRAY(Integer), nullable=False))
    expires_at: datetime = Field(sa_column=timestamp(now=False))
