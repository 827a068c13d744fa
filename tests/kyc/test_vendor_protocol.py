"""The sandbox vendor speaks Sumsub's protocol, and our client speaks it back: signing, idempotent applicant
creation, 5xx as an unknown outcome, and webhooks retried with back-off until the receiver takes them."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import httpx
import pytest
from aiohttp import web

from providers.kyc import KycVendorClient, KycVendorRefused, KycVendorRetryable, verify_digest
from sandbox.runner import serve
from tests.kyc.conftest import Stack, make_user, submit_tier2, tier, upload_passport, wait_for, wait_status

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_unsigned_or_wrongly_signed_requests_are_refused_with_sumsubs_error_body(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.vendor_url) as c:
        bare = await c.post("/resources/applicants?levelName=x", json={"externalUserId": "u"})
        ts = str(int(time.time()))
        sig = hmac.new(b"wrong", f"{ts}POST/resources/applicants?levelName=x".encode(), hashlib.sha256)
        wrong = await c.post(
            "/resources/applicants?levelName=x",
            json={"externalUserId": "u"},
            headers={
                "X-App-Token": stack.settings.kyc_app_token,
                "X-App-Access-Ts": ts,
                "X-App-Access-Sig": sig.hexdigest(),
            },
        )
    assert bare.status_code == 401 and wrong.status_code == 401
    assert set(wrong.json()) >= {"description", "code", "correlationId"}
    impostor = KycVendorClient(stack.vendor_url, stack.settings.kyc_app_token, "not-the-secret-key")
    try:
        with pytest.raises(KycVendorRefused) as refused:
            await impostor.create_applicant(external_user_id=str(uuid.uuid4()), level_name="basic")
        assert refused.value.status == 401
    finally:
        await impostor.close()


async def test_creating_an_applicant_twice_returns_the_same_one(stack: Stack) -> None:
    client = KycVendorClient.from_settings(stack.settings)
    try:
        external = str(uuid.uuid4())
        first = await client.create_applicant(external_user_id=external, level_name="basic")
        again = await client.create_applicant(external_user_id=external, level_name="basic")
        assert first == again
        await client.move_to_level(first, "enhanced")
        assert stack.vendor.applicants[first].level_name == "enhanced"
        assert (await client.review(first)).status == "init"
        await stack.control("POST", "/_control/faults", json={"kind": "api_5xx"})
        with pytest.raises(KycVendorRetryable):
            await client.review(first)
    finally:
        await client.close()


async def test_a_check_request_answered_500_after_it_took_effect_is_asked_again_not_lost(
    stack: Stack,
) -> None:
    max_ = await make_user(stack, tier=1)
    await upload_passport(stack, max_)
    await stack.control("POST", "/_control/faults", json={"kind": "api_5xx_after", "count": 2})
    sid = (await submit_tier2(stack, max_))["id"]
    row = await wait_status(stack, sid, "APPROVED")
    assert stack.vendor.applicants[row.provider_applicant_id].attempt_cnt == 1  # one check, not three
    assert await tier(stack, max_.id) == 2


async def test_webhooks_are_signed_over_the_raw_body_and_retried_until_taken(stack: Stack) -> None:
    seen: list[tuple[bytes, str]] = []

    async def flaky(request: web.Request) -> web.Response:
        seen.append((await request.read(), request.headers.get("X-Payload-Digest", "")))
        return web.Response(status=503 if len(seen) < 3 else 200)

    app = web.Application()
    app.router.add_post("/hook", flaky)
    runner, port = await serve(app, "127.0.0.1", 0)
    old = stack.vendor.webhook_url
    stack.vendor.webhook_url = f"http://127.0.0.1:{port}/hook"
    stack.vendor.retry_base = 0.05
    try:
        client = KycVendorClient.from_settings(stack.settings)
        applicant = await client.create_applicant(external_user_id=str(uuid.uuid4()), level_name="basic")
        await client.add_id_document(
            applicant,
            id_doc_type="PASSPORT",
            country="GBR",
            filename="p.jpg",
            content=b"scan",
            content_type="image/jpeg",
        )
        await client.request_check(applicant)
        await client.close()

        async def three() -> bool:
            return len(seen) >= 3

        await wait_for(three, timeout=10)
    finally:
        stack.vendor.webhook_url = old
        stack.vendor.retry_base = 0.2
        await runner.cleanup()
    assert len({body for body, _ in seen[:3]}) == 1  # the same delivery, retried
    for body, digest in seen:
        verify_digest(stack.settings.kyc_webhook_secret, body, digest)
    delivery = next(
        d for d in stack.vendor.deliveries.values() if d.applicant_id == applicant and d.delivered
    )
    assert delivery.attempts == 3
