"""The daily list refresh as it runs in production: `SanctionsRefreshWorkflow` downloads the lists from
the publisher (the sandbox publisher, serving the shipped files and new editions over HTTP), loads them
and re-screens every customer, recording only outcomes that changed. A publisher failure is retried; a
cut-off file is refused and leaves the list as it was. Every run's history replays."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from activities.screening import ScreeningActivities
from config import Settings
from models.screening_jobs import RefreshInput, RefreshResult
from sandbox.runner import serve
from sandbox.sanctions_publisher import create_app
from services.screening.service import set_subject
from tests.screening.conftest import make_customer
from workflows.screening import SanctionsRefreshWorkflow

NEW_LISTING = """
<INDIVIDUAL>
      <DATAID>990000001</DATAID>
      <VERSIONNUM>1</VERSIONNUM>
      <FIRST_NAME>ZEBULON</FIRST_NAME>
      <SECOND_NAME>QUIMBYFROST</SECOND_NAME>
      <UN_LIST_TYPE>DRC</UN_LIST_TYPE>
      <REFERENCE_NUMBER>CDi.999</REFERENCE_NUMBER>
      <LISTED_ON>2026-11-30</LISTED_ON>
      <NATIONALITY><VALUE>Narnia</VALUE></NATIONALITY>
      <LIST_TYPE><VALUE>UN List</VALUE></LIST_TYPE>
      <INDIVIDUAL_ALIAS><QUALITY/><ALIAS_NAME/></INDIVIDUAL_ALIAS>
      <INDIVIDUAL_DATE_OF_BIRTH><TYPE_OF_DATE>EXACT</TYPE_OF_DATE><YEAR>1970</YEAR></INDIVIDUAL_DATE_OF_BIRTH>
    </INDIVIDUAL>
"""


class Publisher:
    def __init__(self, url: str, http: web.Application) -> None:
        self.url = url
        self.app = http

    async def control(self, path: str, body: dict[str, object]) -> None:
        import httpx

        async with httpx.AsyncClient() as c:
            r = await c.post(f"{self.url}/_control/{path}", json=body)
            assert r.status_code == 200, r.text


@pytest_asyncio.fixture
async def publisher() -> AsyncIterator[Publisher]:
    app = create_app()
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield Publisher(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


def _edition(root: Path, name: str, sanctions_dir: Path, *, extra: str = "") -> Path:
    """A UN-only edition: the shipped consolidated list, with `extra` listings added."""
    target = root / name / "un"
    target.mkdir(parents=True)
    xml = (sanctions_dir / "un" / "consolidated.xml").read_text(encoding="utf-8")
    (target / "consolidated.xml").write_text(xml.replace("<INDIVIDUALS>", "<INDIVIDUALS>" + extra, 1))
    return root / name


async def _checks(engine: AsyncEngine, user_id: uuid.UUID) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT result FROM aml_checks WHERE user_id = :u AND check_type = 'SANCTIONS' "
                "ORDER BY created_at, id"
            ),
            {"u": user_id},
        )
        return [r.result for r in rows]


async def test_a_scheduled_refresh_downloads_loads_and_records_only_changed_outcomes(
    screening_engine: AsyncEngine,
    temporal_client: Client,
    task_queue: str,
    sanctions_dir: Path,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    settings = Settings(
        environment="test",
        sanctions_list_urls={"un/consolidated.xml": f"{publisher.url}/un/consolidated.xml"},
        sanctions_download_dir=str(tmp_path / "downloads"),
    )
    (tmp_path / "downloads").mkdir()
    listed = _edition(tmp_path, "with-new-listing", sanctions_dir, extra=NEW_LISTING)
    shipped = _edition(tmp_path, "shipped", sanctions_dir)
    customer = await make_customer(screening_engine)
    await set_subject(
        screening_engine, customer, full_name="Zebulon Quimbyfrost", date_of_birth=None, nationality=None
    )
    bystander = await make_customer(screening_engine)
    await set_subject(
        screening_engine, bystander, full_name="Harriet Oakenshield", date_of_birth=None, nationality=None
    )
    screening = ScreeningActivities(engine=screening_engine, settings=settings)

    run_ids: list[str] = []

    async def refresh() -> RefreshResult:
        run_ids.append(f"sanctions-refresh-{uuid.uuid4()}")
        return await temporal_client.execute_workflow(
            SanctionsRefreshWorkflow.run, RefreshInput(), id=run_ids[-1], task_queue=task_queue
        )

    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[SanctionsRefreshWorkflow],
        activities=[screening.download_lists, screening.refresh_list],
    ):
        # A new edition adds a listing; the publisher fails once first (the download is retried).
        await publisher.control("edition", {"path": str(listed)})
        await publisher.control("faults", {"kind": "http_500", "count": 1})
        first = await refresh()
        un = next(r for r in first.lists if r.source == "UN_SC")
        assert (un.added, un.changed, un.removed) == (1, 0, 0)
        assert un.screened >= 2 and un.outcome_changes >= 1
        assert [r.found for r in first.lists if r.source != "UN_SC"] == [False, False]  # not configured
        assert await _checks(screening_engine, customer) == ["HIT"]
        assert await _checks(screening_engine, bystander) == []

        # The same edition again: every customer re-screened, nothing changed, nothing recorded.
        again = await refresh()
        un = next(r for r in again.lists if r.source == "UN_SC")
        assert (un.added, un.changed, un.removed, un.outcome_changes) == (0, 0, 0, 0)
        assert await _checks(screening_engine, customer) == ["HIT"]

        # A cut-off download is refused: the list stays as it was, the run still ends.
        await publisher.control("faults", {"kind": "truncate", "count": 1})
        cut = await refresh()
        un = next(r for r in cut.lists if r.source == "UN_SC")
        assert un.refused and un.added == un.removed == 0
        assert await _checks(screening_engine, customer) == ["HIT"]

        # The listing is lifted in the next edition: the customer's outcome changes back to CLEAR.
        await publisher.control("edition", {"path": str(shipped)})
        lifted = await refresh()
        un = next(r for r in lifted.lists if r.source == "UN_SC")
        assert (un.added, un.removed) == (0, 1), lifted
        assert await _checks(screening_engine, customer) == ["HIT", "CLEAR"]
        assert await _checks(screening_engine, bystander) == []
    shutil.rmtree(tmp_path / "downloads", ignore_errors=True)
    replayer = Replayer(workflows=[SanctionsRefreshWorkflow], data_converter=temporal_client.data_converter)
    for workflow_id in run_ids:  # every run's history (retried download, refused file) replays
        await replayer.replay_workflow(await temporal_client.get_workflow_handle(workflow_id).fetch_history())
