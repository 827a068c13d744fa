"""What the dispatcher asks of a channel, and the three ways a send can end.

A send either succeeded (the provider's message id), was certainly not taken (`DeliveryFailed`: retry
later; `DeliveryRefused`: never, park it), or we cannot tell (`DeliveryUnknown`: a timeout or a 5xx after
the request left). An unknown send is never simply repeated: the dispatcher asks the provider (`lookup`,
by the delivery id the send carried) until it knows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from services.notifications.templates import RenderedMessage


class DeliveryFailed(Exception):
    """The provider certainly did not take the message (connection refused, 429, 401): retry with backoff."""


class DeliveryRefused(DeliveryFailed):
    """The provider will never take this message (bad address, malformed request): dead-letter it."""


class DeliveryUnknown(Exception):
    """The request may have reached the provider (timeout, 5xx after sending): look it up, do not resend."""


class LookupUnavailable(Exception):
    """The provider could not be asked now; ask again later (the send stays in doubt)."""


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One claimed delivery: everything a channel needs to send it or look it up."""

    delivery_id: uuid.UUID
    outbox_id: uuid.UUID
    event: str
    channel: str
    recipient: str
    message: RenderedMessage


class ChannelSender(Protocol):
    async def send(self, job: DeliveryJob) -> str:
        """Send; return the provider's message id. Raises DeliveryFailed/Refused/Unknown."""
        ...

    async def lookup(self, job: DeliveryJob) -> str | None:
        """The provider's id of this delivery if the provider has it, None if it has not.
        Raises LookupUnavailable when it cannot be asked, or cannot look up at all."""
        ...
