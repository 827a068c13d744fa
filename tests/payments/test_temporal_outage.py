"""Temporal down is not a business answer: the bank's payout webhook is answered 503 (the bank
redelivers) and a customer's cancel 503 with Retry-After, never "ignored" or 409. Only a saga that is
genuinely finished (or never existed) is acknowledged, and 409 is kept for the saga's own refusal."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from devstack.temporal_server import temporal_binary
from models.payments import withdrawal_workflow_id
from providers.bank import SIGNATURE_HEADER, TIMESTAMP_HEADER
from providers.email import EmailSender
from sandbox.bank import sign
from temporal import search_attributes
from tests.api.conftest import TEST_LIMITS
from tests.payments.conftest import Stack, deposit_gbp, make_user
from tests.payments.test_withdrawal_safety import _row, _until_status, _withdraw


def _payout_event(withdrawal_id: str, status: str = "completed") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": f"payout.{status}",
            "data": {"external_id": withdrawal_id, "payout_id": f"po_{uuid.uuid4().hex[:10]}"},
        }
    ).encode()


def _signed(stack: Stack, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    sig = sign(stack.settings.bank_webhook_secret, stamp, body)
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"v1={sig}"}


class Outage:
    """A Temporal server of the test's own, which it stops under a running API."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self._env: WorkflowEnvironment | None = env

    async def stop(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            await env.shutdown()


@asynccontextmanager
async def api_on_a_temporal_that_goes_down(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, Outage]]:
    """The API on our database, its Temporal client connected to a Temporal server of its own that
    the test stops (as a cluster outage looks to a running API)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
    )
    outage = Outage(env)
    try:
        app = create_app(
            stack.settings, temporal_address=str(env.client.service_client.config.target_host),
            rate_limits=TEST_LIMITS, email_sender=EmailSender.from_settings(stack.settings),
        )  # fmt: skip
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
                yield c, outage
    finally:
        await outage.stop()


async def test_a_payout_webhook_is_503_while_temporal_is_down_and_acked_once_the_saga_is_gone(
    stack: Stack,
) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "100.00")
    done = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "20.00"})).json()["id"]
    await _until_status(stack, done, "COMPLETED")
    # The saga ends a moment after its row says COMPLETED (it still tells the customer): wait for its end.
    await stack.client.get_workflow_handle(withdrawal_workflow_id(done)).result()
    # Finished saga (our shared Temporal is up): acknowledged, the bank may stop redelivering.
    body = _payout_event(done)
    async with stack.http() as c:
        r = await c.post("/api/v1/webhooks/bank", content=body, headers=_signed(stack, body))
    assert r.status_code == 200 and r.json()["status"] == "ignored", r.text

    async with api_on_a_temporal_that_goes_down(stack) as (api, outage):
        body = _payout_event(str(uuid.uuid4()))
        r = await api.post("/api/v1/webhooks/bank", content=body, headers=_signed(stack, body))
        assert r.status_code == 200 and r.json()["status"] == "ignored", r.text  # no such saga: gone
        await outage.stop()  # the cluster goes away under the running API

        body = _payout_event(done)
        r = await api.post("/api/v1/webhooks/bank", content=body, headers=_signed(stack, body))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "temporal_unavailable"
        assert int(r.headers["retry-after"]) > 0


async def test_cancelling_while_temporal_is_down_is_503_not_a_refusal(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")

    async with api_on_a_temporal_that_goes_down(stack) as (api, outage):
        assert (await api.get("/api/v1/withdrawals", headers=customer.headers())).status_code == 200
        r = await api.post(f"/api/v1/withdrawals/{uuid.uuid4()}/cancel", headers=customer.headers())
        assert r.status_code == 404  # not theirs / not there: no Temporal needed
        # Connect the API's client while the server is up, then take the server away.
        r = await api.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
        assert r.status_code == 409, r.text  # that server has no such saga: as if finished
        await outage.stop()
        r = await api.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "temporal_unavailable" and int(r.headers["retry-after"]) > 0

    assert (await _row(stack, wid) or {})["status"] == "AWAITING_APPROVAL"  # nothing happened
    async with stack.http() as c:  # Temporal back (the real one): the same request now works
        r = await c.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
        again = await c.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
    assert again.status_code == 409 and again.json()["code"] == "not_cancellable"


async def test_approving_while_temporal_is_down_is_503_not_404(stack: Stack) -> None:
    """A staff decision the saga could not be asked about is an unknown outcome (503, decide again),
    not "no such withdrawal": only a saga Temporal says does not exist is a 404."""
    customer = await make_user(stack)
    approver = await make_user(stack, roles=["approver"])
    await deposit_gbp(stack, customer, "13000.00")
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")
    url = f"/api/v1/admin/withdrawals/{wid}/approve"
    body = {"reason": "source of funds checked"}

    async with api_on_a_temporal_that_goes_down(stack) as (api, outage):
        r = await api.post(url, json=body, headers=approver.headers(totp=True))
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text  # that server has no saga
        await outage.stop()
        r = await api.post(url, json=body, headers=approver.headers(totp=True))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "temporal_unavailable" and int(r.headers["retry-after"]) > 0

    assert (await _row(stack, wid) or {})["status"] == "AWAITING_APPROVAL"  # nothing was decided
    async with stack.http() as c:  # Temporal back: the same decision now counts
        r = await c.post(url, json=body, headers=approver.headers(totp=True))
    assert r.status_code == 200 and r.json()["code"] == "approved", r.text
    await _until_status(stack, wid, "COMPLETED")
