"""What each task queue runs. Adding a saga means adding it here, and nowhere else in workers/.

`Dependencies` holds the clients that activity classes are constructed with; it is built once
per worker process and closed on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.ping import PingActivities
from config import Settings
from temporal import task_queues
from workflows.ping import PingWorkflow


@dataclass
class Dependencies:
    settings: Settings
    engine: AsyncEngine
    closers: list[Callable[[], Any]] = field(default_factory=list)


@dataclass
class QueueSpec:
    workflows: Sequence[type]
    activities: Sequence[Callable[..., Any]]


def build(deps: Dependencies) -> dict[str, QueueSpec]:
    """Task queue -> the workflows and bound activity methods its workers run."""
    ping = PingActivities(deps.engine)
    return {
        task_queues.ORDERS: QueueSpec(workflows=[PingWorkflow], activities=[ping.ping]),
        task_queues.PAYMENTS: QueueSpec(workflows=[], activities=[]),
        task_queues.OPS: QueueSpec(workflows=[], activities=[]),
    }
