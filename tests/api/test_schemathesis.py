"""Property-based fuzzing of the auth API (`/api/v1/auth/`; other routers test their own) from the
app's own OpenAPI schema (schemathesis, in-process ASGI).

Asserts what the issue asks: no 5xx, and every response (status, content type, headers, body) conforms
to the documented schema. Requests carry a real customer's access token, then a staff user's (every
role), so the authenticated paths are exercised beyond their 401. Business rules that valid-by-schema
input can still break (weak password, wrong current password) answer documented 4xx problems, so
"positive data accepted" is not asserted.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from sqlalchemy import text

from config import Settings
from models.database import sync_engine
from models.users import StaffRole
from sandbox.mail import create_app as create_mail_app
from tests.api.conftest import PASSWORD, build_app, unique_email
from tests.schema_fuzz import CHECKS


@contextmanager
def mail_sink_on_a_thread(api_key: str) -> Iterator[str]:
    """A mail sink with its own event loop. The session loop (and the sink on it) is idle while this
    synchronous test runs, so mail sent by the app under test needs a sink that keeps serving."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(create_mail_app(api_key))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        runner = box["runner"]
        assert isinstance(runner, web.AppRunner)
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="fuzz-mail-sink", daemon=True)
    thread.start()
    assert ready.wait(10), "mail sink did not start"
    try:
        yield str(box["url"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def api_schema(settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    with mail_sink_on_a_thread(settings.sendgrid_api_key) as sink:
        yield from _schema(settings.model_copy(update={"sendgrid_host": sink}))


def _schema(api_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    app = build_app(api_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # A customer and a staff user whose tokens the generated requests carry (schemathesis runs the app on
    # its own loop).
    fuzz_tokens = []
    with asgi.get_client(app) as client:  # type: ignore[arg-type]
        for staff in (False, True):
            email = unique_email("fuzz-staff" if staff else "fuzz")
            registered = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert registered.status_code == 202
            if staff:
                eng = sync_engine(api_settings.database_url)
                with eng.begin() as conn:
                    conn.execute(
                        text("UPDATE users SET roles = :r WHERE email = :e"),
                        {"r": [r.value for r in StaffRole], "e": email},
                    )
                eng.dispose()
            tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
            fuzz_tokens.append(tokens["access_token"])
    app.state.fuzz_tokens = fuzz_tokens
    try:
        yield schema.include(path_regex="^/api/v1/auth/")
    finally:
        asgi.shutdown_lifespans()


def test_api_conforms_to_its_schema(api_schema: schemathesis.BaseSchema) -> None:
    # Operations are driven one by one with hypothesis directly: schemathesis' lazy pytest integration
    # (`from_fixture` + `parametrize`) does not work with pytest 9.
    tokens = api_schema.app.state.fuzz_tokens
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the schema itself is valid
        operations.append(result.ok())
    assert len(operations) >= 14
    statuses: Counter[int] = Counter()

    for operation, token in ((o, t) for o in operations for t in tokens):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=10,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                auth = {"Authorization": f"Bearer {token}"}  # noqa: B023 - called within this iteration
                response = case.call_and_validate(headers=auth, checks=CHECKS)
                statuses[response.status_code] += 1

            try:
                check()
            except Unsatisfiable:
                # No parameters and no body (e.g. POST /logout): there is no invalid input to make.
                assert mode is GenerationMode.NEGATIVE, operation.label

    # Not vacuous: the token worked for some calls, and bad input was turned away with documented 4xx.
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) > 0, statuses
    assert statuses[422] > 0, statuses
    assert not any(s >= 500 for s in statuses), statuses
