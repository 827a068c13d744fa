"""The outbox dispatcher: `SELECT … FOR UPDATE SKIP LOCKED` workers, any number of them, in any process.

Why not a Temporal workflow per row: the outbox row is already the durable record of the work, and
something would still have to poll the table to start those workflows (a second queue to keep in step
with the first). Here the table is the queue: every dispatcher claims due rows with SKIP LOCKED (no two
take the same row, none waits on another), a crashed dispatcher's claims come due again when their lease
runs out, and the state ops see (`notification_deliveries`) is the state the dispatcher works from.

Two steps, each its own short transaction:

1. Fan-out: an outbox row becomes one delivery per channel (unique per row and channel) after the
   customer's preferences; the in-app feed row is written in that same transaction (it *is* the in-app
   delivery, so it exists exactly once). The row is marked `fanned_out_at`.
2. Delivery: a due delivery is claimed and marked SENDING, and that is committed *before* the send. If
   the process dies after the provider took the message but before SENT was recorded, the next claim
   finds it SENDING: an unknown outcome. It is looked up at the provider by the delivery id the send
   carried (SendGrid `custom_args`), and resent only once the provider has said it does not have it for
   `unknown_grace_seconds` (its activity feed lags). A known failure retries with doubling backoff up to
   `max_attempts`, then the delivery is DEAD: listed for ops, replayed by them (back to PENDING).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.notifications import Channel, DeliveryStatus
from services.notifications import preferences
from services.notifications.channels import (
    ChannelSender,
    DeliveryFailed,
    DeliveryJob,
    DeliveryRefused,
    DeliveryUnknown,
    LookupUnavailable,
)
from services.notifications.events import Category, category_of
from services.notifications.templates import render

log = logging.getLogger("notifications.dispatcher")


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    batch_size: int = 50
    # How long a claimed delivery is its claimer's: after that another dispatcher takes it as abandoned.
    lease_seconds: float = 60.0
    max_attempts: int = 8
    backoff_first_seconds: float = 2.0
    backoff_max_seconds: float = 900.0
    # An in-doubt send is resent only after the provider has not shown it for this long.
    unknown_grace_seconds: float = 300.0
    poll_seconds: float = 1.0
    ops_email: str = ""
    ops_webhook_url: str = ""

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_first_seconds * 2 ** max(attempts - 1, 0), self.backoff_max_seconds)


# Payload fields holding single-use secrets (links, tokens), dropped from the outbox once the mail is sent.
SECRET_FIELDS = {
    "email_verification": ("link",),
    "password_reset": ("link", "token"),
}

_PENDING_ROWS = text(
    "SELECT o.id, o.event, o.user_id, o.payload, u.email, u.phone, o.created_at FROM notification_outbox o "
    "LEFT JOIN users u ON u.id = o.user_id "
    "WHERE o.fanned_out_at IS NULL ORDER BY o.created_at LIMIT :n FOR UPDATE OF o SKIP LOCKED"
)
_ADD_DELIVERY = text(
    "INSERT INTO notification_deliveries (id, outbox_id, channel, recipient, status, sent_at, last_error) "
    "VALUES (:id, :outbox_id, :channel, :recipient, :status, "
    "CASE WHEN :sent THEN now() END, :error) ON CONFLICT (outbox_id, channel) DO NOTHING"
)
_ADD_FEED_ROW = text(
    "INSERT INTO user_notifications (id, user_id, outbox_id, category, title, body, created_at) "
    "VALUES (:id, :user_id, :outbox_id, :category, :title, :body, :at) ON CONFLICT (outbox_id) DO NOTHING"
)
_FANNED_OUT = text("UPDATE notification_outbox SET fanned_out_at = now() WHERE id = :id")

_CLAIM = text(
    "WITH due AS ("
    "  SELECT dd.id, dd.status FROM notification_deliveries dd"
    "  JOIN notification_outbox oo ON oo.id = dd.outbox_id"
    "  WHERE dd.status IN ('PENDING', 'SENDING') AND dd.next_attempt_at <= now()"
    "    AND dd.channel = ANY(:channels)"
    "  ORDER BY dd.next_attempt_at, oo.created_at LIMIT :n FOR UPDATE OF dd SKIP LOCKED) "
    "UPDATE notification_deliveries d SET status = 'SENDING', "
    "  attempts = d.attempts + CASE WHEN due.status = 'PENDING' THEN 1 ELSE 0 END, "
    "  sending_since = CASE WHEN due.status = 'PENDING' THEN now() ELSE d.sending_since END, "
    "  next_attempt_at = now() + make_interval(secs => :lease), updated_at = now() "
    "FROM due, notification_outbox o WHERE d.id = due.id AND o.id = d.outbox_id "
    "RETURNING d.id, d.outbox_id, d.channel, d.recipient, d.attempts, due.status AS was, "
    "  (now() - d.sending_since) > make_interval(secs => :grace) AS grace_over, o.event, o.payload, "
    "  o.created_at AS event_at"
)


class Dispatcher:
    """Fans out the outbox and delivers it through `senders` (channel name -> sender)."""

    def __init__(
        self, engine: AsyncEngine, senders: Mapping[str, ChannelSender], policy: DispatchPolicy
    ) -> None:
        self._engine = engine
        self._senders = dict(senders)
        self._policy = policy

    # -- fan-out --

    async def fan_out(self) -> int:
        """Turn pending outbox rows into deliveries (and feed rows); returns how many rows."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_PENDING_ROWS, {"n": self._policy.batch_size})).all()
            for row in rows:
                await self._fan_out_row(conn, row)
        return len(rows)

    async def _fan_out_row(self, conn: AsyncConnection, row: Any) -> None:
        outbox_id, event, user_id, payload, email, phone, event_at = row
        category = category_of(event)
        if category is Category.OPS:
            targets = {
                Channel.OPS_EMAIL: self._policy.ops_email,
                Channel.OPS_WEBHOOK: self._policy.ops_webhook_url,
            }
        else:
            wanted = await preferences.channels_for(conn, user_id, category)
            addresses = {Channel.EMAIL: email, Channel.SMS: phone, Channel.IN_APP: str(user_id)}
            targets = {c: addresses[c] for c in wanted}
        for channel, recipient in targets.items():
            status = DeliveryStatus.PENDING if recipient else DeliveryStatus.SKIPPED
            error = None
            if channel is Channel.IN_APP and recipient:
                try:
                    message = render(event, payload)
                except Exception as e:  # a payload the template cannot show: parked, not retried forever
                    log.exception("notification %s cannot be rendered", outbox_id)
                    status, error = DeliveryStatus.DEAD, f"render failed: {type(e).__name__}: {e}"[:2000]
                    message = None
            if channel is Channel.IN_APP and recipient and message is not None:
                await conn.execute(
                    _ADD_FEED_ROW,
                    {
                        "id": uuid.uuid4(),
                        "user_id": user_id,
                        "outbox_id": outbox_id,
                        "category": category.value,
                        "title": message.subject[:255],
                        "body": message.short,
                        "at": event_at,  # the feed is in the order of the events, not of the fan-out
                    },
                )
                status = DeliveryStatus.SENT
            await conn.execute(
                _ADD_DELIVERY,
                {
                    "id": uuid.uuid4(),
                    "outbox_id": outbox_id,
                    "channel": channel.value,
                    "recipient": recipient or None,
                    "status": status.value,
                    "sent": status is DeliveryStatus.SENT,
                    "error": error,
                },
            )
        await conn.execute(_FANNED_OUT, {"id": outbox_id})

    # -- delivery --

    async def deliver(self) -> int:
        """Claim due deliveries of the channels this dispatcher can send, and send or look up each."""
        if not self._senders:
            return 0
        async with self._engine.begin() as conn:
            claimed = (
                await conn.execute(
                    _CLAIM,
                    {
                        "n": self._policy.batch_size,
                        "channels": list(self._senders),
                        "lease": self._policy.lease_seconds,
                        "grace": self._policy.unknown_grace_seconds,
                    },
                )
            ).all()
        # One recipient's messages go in the order of their events (a customer reads "requested" before
        # "completed"); different recipients' go side by side.
        queues: dict[tuple[str, str], list[Any]] = {}
        for row in sorted(claimed, key=lambda r: r.event_at):
            queues.setdefault((row.channel, row.recipient), []).append(row)
        await asyncio.gather(*(self._deliver_in_order(rows) for rows in queues.values()))
        return len(claimed)

    async def _deliver_in_order(self, rows: list[Any]) -> None:
        for row in rows:
            await self._deliver_one(row)

    async def _deliver_one(self, row: Any) -> None:
        try:
            message = render(row.event, row.payload)
        except Exception as e:  # a payload the template cannot show: parked for ops, not retried forever
            log.exception("notification delivery %s cannot be rendered", row.id)
            await self._update(
                "UPDATE notification_deliveries SET status = 'DEAD', last_error = :why, updated_at = now() "
                "WHERE id = :id AND status = 'SENDING'",
                {"id": row.id, "why": f"render failed: {type(e).__name__}: {e}"[:2000]},
            )
            return
        job = DeliveryJob(
            delivery_id=row.id,
            outbox_id=row.outbox_id,
            event=row.event,
            channel=row.channel,
            recipient=row.recipient,
            message=message,
        )
        sender = self._senders[row.channel]
        attempts = int(row.attempts)
        if row.was == DeliveryStatus.SENDING:
            # In doubt: a claimer died (or the provider timed out) after the send may have left.
            try:
                found = await sender.lookup(job)
            except LookupUnavailable as e:
                await self._still_unknown(job, attempts, f"lookup unavailable: {e}")
                return
            if found is not None:
                await self._sent(job, found)
                return
            if not row.grace_over:
                await self._still_unknown(job, attempts, "not shown by the provider yet")
                return
            attempts = await self._resend_begins(job)
        try:
            message_id = await sender.send(job)
        except DeliveryUnknown as e:
            await self._still_unknown(job, attempts, f"outcome unknown: {e}")
        except DeliveryRefused as e:
            await self._dead(job, f"refused: {e}")
        except DeliveryFailed as e:
            if attempts >= self._policy.max_attempts:
                await self._dead(job, f"failed {attempts} times, last: {e}")
            else:
                await self._retry(job, attempts, str(e))
        except Exception as e:  # a bug in a sender must not stop the others; the lease brings it back
            log.exception("notification delivery %s crashed", job.delivery_id)
            await self._still_unknown(job, attempts, f"sender error: {type(e).__name__}")
        else:
            await self._sent(job, message_id)

    async def _update(self, sql: str, params: dict[str, Any]) -> Any:
        async with self._engine.begin() as conn:
            return await conn.execute(text(sql), params)

    async def _sent(self, job: DeliveryJob, message_id: str) -> None:
        await self._update(
            "UPDATE notification_deliveries SET status = 'SENT', provider_message_id = :mid, "
            "sent_at = now(), last_error = NULL, updated_at = now() WHERE id = :id AND status = 'SENDING'",
            {"id": job.delivery_id, "mid": message_id or None},
        )
        if job.event in SECRET_FIELDS:
            # Sent (and recorded): the single-use link need not wait in our database until it expires.
            await self._update(
                "UPDATE notification_outbox SET payload = payload - CAST(:fields AS text[]) WHERE id = :id",
                {"id": job.outbox_id, "fields": list(SECRET_FIELDS[job.event])},
            )

    async def _resend_begins(self, job: DeliveryJob) -> int:
        """The provider has not had it for the whole grace: a new attempt, recorded before it is made."""
        result = await self._update(
            "UPDATE notification_deliveries SET attempts = attempts + 1, sending_since = now(), "
            "updated_at = now() WHERE id = :id RETURNING attempts",
            {"id": job.delivery_id},
        )
        return int(result.scalar_one())

    async def _still_unknown(self, job: DeliveryJob, attempts: int, why: str) -> None:
        wait = min(self._policy.backoff(attempts), max(self._policy.unknown_grace_seconds / 4, 0.05))
        await self._update(
            "UPDATE notification_deliveries SET next_attempt_at = now() + make_interval(secs => :wait), "
            "last_error = :why, updated_at = now() WHERE id = :id AND status = 'SENDING'",
            {"id": job.delivery_id, "wait": wait, "why": why},
        )

    async def _retry(self, job: DeliveryJob, attempts: int, why: str) -> None:
        await self._update(
            "UPDATE notification_deliveries SET status = 'PENDING', sending_since = NULL, "
            "next_attempt_at = now() + make_interval(secs => :wait), last_error = :why, updated_at = now() "
            "WHERE id = :id AND status = 'SENDING'",
            {"id": job.delivery_id, "wait": self._policy.backoff(attempts), "why": why[:2000]},
        )

    async def _dead(self, job: DeliveryJob, why: str) -> None:
        log.warning("notification delivery %s (%s) dead-lettered", job.delivery_id, job.channel)
        await self._update(
            "UPDATE notification_deliveries SET status = 'DEAD', sending_since = NULL, last_error = :why, "
            "updated_at = now() WHERE id = :id AND status = 'SENDING'",
            {"id": job.delivery_id, "why": why[:2000]},
        )

    # -- the loop --

    async def run_once(self) -> int:
        return await self.fan_out() + await self.deliver()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Dispatch until `stop` is set (or the task is cancelled); a failed pass waits a poll and retries."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("notification dispatch pass failed")
                busy = 0
            if busy:
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._policy.poll_seconds)
            except TimeoutError:
                pass


def policy_from_settings(settings: Any) -> DispatchPolicy:
    """The dispatch policy of `config.Settings` (typed loosely: services do not import config)."""
    return DispatchPolicy(
        lease_seconds=settings.notification_lease_seconds,
        max_attempts=settings.notification_max_attempts,
        backoff_first_seconds=settings.notification_backoff_first_seconds,
        backoff_max_seconds=settings.notification_backoff_max_seconds,
        unknown_grace_seconds=settings.notification_unknown_grace_seconds,
        poll_seconds=settings.notification_poll_seconds,
        ops_email=settings.ops_alert_email,
        ops_webhook_url=settings.ops_alert_webhook_url,
    )
