"""Notifications (issue 17, docs/architecture.md §C.9): the transactional outbox, one delivery record per
(outbox row, channel), the customer's in-app feed and their per-category, per-channel preferences.

A notifiable change writes its `notification_outbox` row in the same transaction as the change itself
(`services.notifications.outbox.enqueue`), so a notification exists exactly when the change does. The
dispatcher fans each row out into `notification_deliveries` (one per channel, unique per row and channel:
that uniqueness is what makes delivery once-per-channel) and marks the row `fanned_out_at`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class Channel(StrEnum):
    """Where a notification goes. `ops_email` / `ops_webhook` are the ops mailbox and the Slack-style hook."""

    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"
    OPS_EMAIL = "ops_email"
    OPS_WEBHOOK = "ops_webhook"


class DeliveryStatus(StrEnum):
    """A delivery's life: PENDING (due at `next_attempt_at`) -> SENDING (handed to the provider, outcome
    not yet recorded: after a crash this is an unknown outcome, looked up before any resend) -> SENT ->
    DELIVERED / BOUNCED / DROPPED (the provider's callbacks). DEAD: retries exhausted, parked for ops
    (replay puts it back to PENDING). SKIPPED: no address (e.g. SMS without a phone number)."""

    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    BOUNCED = "BOUNCED"
    DROPPED = "DROPPED"
    DEAD = "DEAD"
    SKIPPED = "SKIPPED"


_CHANNELS = ", ".join(f"'{c.value}'" for c in Channel)
_STATUSES = ", ".join(f"'{s.value}'" for s in DeliveryStatus)


class NotificationOutbox(SQLModel, table=True):
    """One notifiable event, written in the transaction of the change it reports."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index(
            "ix_notification_outbox_pending",
            "created_at",
            postgresql_where=text("fanned_out_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    event: str = Field(max_length=64)
    # None for ops events (they go to the ops mailbox and webhook, not to a customer).
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb(nullable=False))
    dedupe_key: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    # Set when the dispatcher has created this row's deliveries (and its in-app feed row).
    fanned_out_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class NotificationDelivery(SQLModel, table=True):
    """One channel's delivery of one outbox row: the record that makes it once per channel."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "channel", name="uq_notification_deliveries_outbox_channel"),
        CheckConstraint(f"channel IN ({_CHANNELS})", name="ck_notification_deliveries_channel"),
        CheckConstraint(f"status IN ({_STATUSES})", name="ck_notification_deliveries_status"),
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('PENDING', 'SENDING')"),
        ),
        Index("ix_notification_deliveries_dead", "updated_at", postgresql_where=text("status = 'DEAD'")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    outbox_id: uuid.UUID = Field(foreign_key="notification_outbox.id", index=True)
    channel: str = Field(max_length=20)
    recipient: str | None = Field(default=None, max_length=255)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=12)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = Field(default=None, sa_column=timestamp())
    # SENDING since when: an in-doubt send is looked up, not resent, until the provider can answer.
    sending_since: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    provider_message_id: str | None = Field(default=None, max_length=255, index=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class UserNotification(SQLModel, table=True):
    """A row of the customer's in-app feed (one per outbox row at most)."""

    __tablename__ = "user_notifications"
    __table_args__ = (
        Index("ix_user_notifications_user_created", "user_id", "created_at"),
        Index("ix_user_notifications_unread", "user_id", postgresql_where=text("read_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    outbox_id: uuid.UUID = Field(
        sa_column=Column(
            "outbox_id",
            ForeignKey("notification_outbox.id"),
            nullable=False,
            unique=True,
        )
    )
    category: str = Field(max_length=32)
    title: str = Field(max_length=255)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    read_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class NotificationPreference(SQLModel, table=True):
    """A customer's choice for one category on one channel. No row: the category's default (on)."""

    __tablename__ = "notification_preferences"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    category: str = Field(max_length=32, primary_key=True)
    channel: str = Field(max_length=20, primary_key=True)
    enabled: bool = True
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
