"""GDPR sagas recorded on the time-skipping server (test_retention.py) still replay on the current code:
a change to either saga's command sequence needs `workflow.patched`, since these sleep for an hour to five
years and are running when new code is deployed."""

from __future__ import annotations

from tests.histories import replay_recorded
from workflows.gdpr import GdprExportWorkflow, RetentionWorkflow


async def test_recorded_export_histories_replay_on_the_current_workflow() -> None:
    # Built, emailed (no sender configured), kept for the link's lifetime, deleted.
    assert await replay_recorded("gdpr_export", GdprExportWorkflow) >= 1


async def test_recorded_retention_histories_replay_on_the_current_workflow() -> None:
    # Five years then pseudonymised; and a saga whose closure never committed, ending without a purge.
    assert await replay_recorded("gdpr_retention", RetentionWorkflow) >= 2
