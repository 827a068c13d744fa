"""Workflow histories recorded from earlier versions of the sagas, replayed by the current code.

Each file is one history (`WorkflowHistory.to_json()`, gzipped, named by its workflow id), recorded
from the order and withdrawal tests on the workflow code as it stood before a restructure, one per
distinct sequence of commands (activities, local activities, timers, signals, updates). A change to
a saga that would give any of them a different command sequence fails `replay_recorded`: such a
change needs `workflow.patched` so workflows already running keep their course. Add a history here
whenever a saga gains a path these do not cover.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

HERE = Path(__file__).parent


def recorded(kind: str) -> list[WorkflowHistory]:
    """Every recorded history under `tests/histories/<kind>/`."""
    files = sorted((HERE / kind).glob("*.json.gz"))
    return [
        WorkflowHistory.from_json(f.name.removesuffix(".json.gz"), gzip.decompress(f.read_bytes()).decode())
        for f in files
    ]


async def replay_recorded(kind: str, workflow: type) -> int:
    """Replay every recorded history of `kind` on `workflow`; the number replayed (a failure raises)."""
    histories = recorded(kind)
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)
    return len(histories)
