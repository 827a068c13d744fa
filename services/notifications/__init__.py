"""Notifications (issue 17): the transactional outbox, its dispatcher, the channels and the templates.

Callers need only `enqueue` (in the transaction of the change they report) and the event names.
"""

from services.notifications.events import Category, NotificationEvent
from services.notifications.outbox import enqueue

__all__ = ["Category", "NotificationEvent", "enqueue"]
