"""A local KYC vendor speaking the part of Sumsub's API the broker uses: `make run` and the tests.

Like Sumsub (https://docs.sumsub.com/reference):

- **Signed requests.** Every `/resources/...` call carries `X-App-Token` (the app token),
  `X-App-Access-Ts` (unix seconds) and `X-App-Access-Sig` = hex HMAC-SHA256(secret key,
  ts + METHOD + path-with-query + raw body). A missing or wrong signature, or a timestamp more than
  `SIGNATURE_WINDOW` away, is 401 with Sumsub's error body `{"description", "code", "correlationId"}`.
- `POST /resources/applicants?levelName=L {"externalUserId", "info"?}` creates an applicant (409 if the
  external user id already has one, as Sumsub answers); `GET /resources/applicants/-;externalUserId=X/one`
  and `GET /resources/applicants/{id}/one` read it back.
- `POST /resources/applicants/{id}/info/idDoc` (multipart: `metadata` JSON `{"idDocType", "country"}` and
  `content`, the image) adds an identity document.
- `POST /resources/applicants/{id}/status/pending` asks for a check: the applicant becomes `pending`, an
  `applicantPending` webhook goes out and, after `review_after` seconds, the review completes with the next
  scripted outcome (default GREEN) and an `applicantReviewed` webhook follows.
- `GET /resources/applicants/{id}/status` and `.../requiredIdDocsStatus` answer the review state.
- `POST /resources/applicants/{id}/moveToLevel?name=L` moves the applicant to another level.
- `POST /resources/applicants/{id}/status/testCompleted {"reviewAnswer", "reviewRejectType"?,
  "rejectLabels"?, "moderationComment"?, "clientComment"?}` completes the review at once (Sumsub's sandbox
  call for the same).
- **Webhooks** (`applicantPending`, `applicantReviewed` with `reviewResult.reviewAnswer` GREEN/RED,
  `reviewRejectType` RETRY/FINAL, `rejectLabels`, `moderationComment`) are POSTed to the webhook URL with
  `X-Payload-Digest` = hex HMAC-SHA256(webhook secret, raw body) and `X-Payload-Digest-Alg: HMAC_SHA256_HEX`;
  a non-2xx answer or a connection error is retried with doubling back-off (`retries`, `retry_base`).

Control (not Sumsub's; unsigned, for tests and testers):

    POST   /_control/outcomes {"externalUserId", "outcomes": [{reviewAnswer, reviewRejectType, ...}]}
           queue the review results of that customer's next checks (first one first)
    POST   /_control/faults {"kind", "count"?, "delay_ms"?}   DELETE /_control/faults
           webhook_drop (not delivered), webhook_duplicate (delivered twice), webhook_delay (`delay_ms`
           first), webhook_reorder (the next `applicantPending` is held back and sent after the review's
           `applicantReviewed`), api_5xx (the next API call answers 500 without acting), api_5xx_after
           (acts, then answers 500: an unknown outcome for the caller)
    GET    /_control/webhooks                     every delivery with its attempts and last status
    POST   /_control/webhooks/{id}/redeliver      send one again
    POST   /_control/config {"webhook_url"?, "review_after"?, "retries"?, "retry_base"?}
    POST   /_control/reset

CLI (a tester's console, against `make run`'s sandbox):

    python -m sandbox.kyc outcome <our user id> --answer RED --reject-type RETRY --comment "blurred photo"
    python -m sandbox.kyc fault webhook_drop [--count 2]
    python -m sandbox.kyc webhooks

Imports nothing of ours but the shared development secrets: the sandbox is the outside world.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.parser import BytesParser
from typing import Any

import aiohttp
from aiohttp import web

from config.settings import DEV_SECRETS

SIGNATURE_WINDOW = 300
DIGEST_HEADER = "X-Payload-Digest"
DIGEST_ALG_HEADER = "X-Payload-Digest-Alg"


def request_signature(secret: str, ts: str, method: str, path: str, body: bytes) -> str:
    """Sumsub's request signature: hex HMAC-SHA256 over ts + METHOD + path (with query) + body."""
    return hmac.new(
        secret.encode(), ts.encode() + method.upper().encode() + path.encode() + body, hashlib.sha256
    ).hexdigest()


def payload_digest(secret: str, body: bytes) -> str:
    """Sumsub's webhook digest: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Applicant:
    id: str
    external_user_id: str
    level_name: str
    created_at: str
    info: dict[str, Any] = field(default_factory=dict)
    inspection_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    id_docs: list[dict[str, Any]] = field(default_factory=list)
    review_status: str = "init"  # init -> pending -> completed (-> pending again after a RETRY)
    review_result: dict[str, Any] | None = None
    attempt_cnt: int = 0
    review_date: str | None = None

    def public(self) -> dict[str, Any]:
        review: dict[str, Any] = {
            "reviewStatus": self.review_status,
            "attemptCnt": self.attempt_cnt,
            "levelName": self.level_name,
        }
        if self.review_result is not None:
            review["reviewResult"] = self.review_result
        return {
            "id": self.id,
            "createdAt": self.created_at,
            "externalUserId": self.external_user_id,
            "inspectionId": self.inspection_id,
            "levelName": self.level_name,
            "info": self.info,
            "review": review,
        }


@dataclass
class Delivery:
    id: str
    type: str
    applicant_id: str
    body: str
    attempts: int = 0
    status: int | None = None
    delivered: bool = False
    error: str = ""


@dataclass
class KycVendorState:
    app_token: str
    secret_key: str
    webhook_secret: str
    webhook_url: str
    applicants: dict[str, Applicant] = field(default_factory=dict)
    scripted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by externalUserId
    faults: list[dict[str, Any]] = field(default_factory=list)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    held_back: list[Delivery] = field(default_factory=list)  # webhook_reorder
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    review_after: float = 0.2
    retries: int = 6
    retry_base: float = 0.2

    def take_fault(self, *kinds: str) -> dict[str, Any] | None:
        for f in self.faults:
            if f["kind"] in kinds:
                f["count"] = int(f.get("count", 1)) - 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return f
        return None

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


STATE = web.AppKey("kyc_state", KycVendorState)


def _error(status: int, description: str, error_code: int | None = None) -> web.Response:
    body: dict[str, Any] = {"description": description, "code": status, "correlationId": uuid.uuid4().hex}
    if error_code is not None:
        body["errorCode"] = error_code
    return web.json_response(body, status=status)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@web.middleware
async def _signed(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Check Sumsub's request signature on the API, and play the API faults."""
    if not request.path.startswith("/resources/"):
        return await handler(request)
    state = request.app[STATE]
    token = request.headers.get("X-App-Token", "")
    ts = request.headers.get("X-App-Access-Ts", "")
    sig = request.headers.get("X-App-Access-Sig", "")
    body = await request.read()
    if not hmac.compare_digest(token, state.app_token):
        return _error(401, "App token is invalid", 4000)
    try:
        age = abs(time.time() - int(ts))
    except ValueError:
        return _error(401, "Request timestamp is missing or invalid", 4001)
    expected = request_signature(state.secret_key, ts, request.method, request.raw_path, body)
    if age > SIGNATURE_WINDOW or not hmac.compare_digest(expected, sig):
        return _error(401, "Request signature mismatch", 4003)
    fault = state.take_fault("api_5xx", "api_5xx_after")
    if fault is not None and fault["kind"] == "api_5xx":
        return _error(500, "Internal server error")
    response = await handler(request)
    if fault is not None:  # api_5xx_after: it acted; the caller cannot know
        return _error(500, "Internal server error")
    return response


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    message = BytesParser(policy=email_policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_filename(), payload)
    return parts


def _applicant(request: web.Request) -> Applicant | None:
    return request.app[STATE].applicants.get(request.match_info["id"])


async def create_applicant(request: web.Request) -> web.Response:
    state = request.app[STATE]
    level = request.query.get("levelName", "")
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return _error(400, "Invalid JSON")
    external = body.get("externalUserId") if isinstance(body, dict) else None
    if not level or not isinstance(external, str) or not external:
        return _error(400, "levelName and externalUserId are required")
    if any(a.external_user_id == external for a in state.applicants.values()):
        return _error(409, f"Applicant with external user id '{external}' already exists", 1000)
    info = body.get("info") if isinstance(body.get("info"), dict) else {}
    applicant = Applicant(
        id=uuid.uuid4().hex[:24], external_user_id=external, level_name=level, created_at=_now(), info=info
    )
    state.applicants[applicant.id] = applicant
    return web.json_response(applicant.public(), status=201)


async def get_applicant(request: web.Request) -> web.Response:
    state = request.app[STATE]
    key = request.match_info["id"]
    if key.startswith("-;externalUserId="):
        external = key.removeprefix("-;externalUserId=")
        found = next((a for a in state.applicants.values() if a.external_user_id == external), None)
    else:
        found = state.applicants.get(key)
    if found is None:
        return _error(404, "Applicant not found")
    return web.json_response(found.public())


async def add_id_doc(request: web.Request) -> web.Response:
    applicant = _applicant(request)
    if applicant is None:
        return _error(404, "Applicant not found")
    if not request.content_type.startswith("multipart/"):
        return _error(400, "multipart/form-data expected")
    # The signature check read the body already; parse the multipart bytes themselves.
    parts = _multipart(request.headers.get("Content-Type", ""), await request.read())
    try:
        metadata = json.loads(parts.get("metadata", (None, b""))[1] or b"")
    except ValueError:
        return _error(400, "metadata is not JSON")
    if not isinstance(metadata, dict) or not metadata.get("idDocType") or not metadata.get("country"):
        return _error(400, "metadata needs idDocType and country")
    filename, data = parts.get("content", (None, b""))
    if not data:
        return _error(400, "content (the document image) is required")
    image_id = secrets.randbelow(10**9)
    doc = {
        "idDocType": metadata["idDocType"],
        "country": metadata["country"],
        "imageId": image_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "fileName": filename,
    }
    applicant.id_docs.append(doc)
    return web.json_response(
        {"idDocType": doc["idDocType"], "country": doc["country"]},
        headers={"X-Image-Id": str(image_id)},
    )


async def required_docs_status(request: web.Request) -> web.Response:
    applicant = _applicant(request)
    if applicant is None:
        return _error(404, "Applicant not found")
    identity = [d for d in applicant.id_docs if d["idDocType"] != "SELFIE"]
    body: dict[str, Any] = {"IDENTITY": None, "SELFIE": None}
    if identity:
        body["IDENTITY"] = {
            "reviewResult": applicant.review_result or {},
            "country": identity[-1]["country"],
            "idDocType": identity[-1]["idDocType"],
            "imageIds": [d["imageId"] for d in identity],
        }
    return web.json_response(body)


async def review_status(request: web.Request) -> web.Response:
    applicant = _applicant(request)
    if applicant is None:
        return _error(404, "Applicant not found")
    body: dict[str, Any] = {
        "createDate": applicant.created_at,
        "reviewStatus": applicant.review_status,
        "attemptCnt": applicant.attempt_cnt,
        "levelName": applicant.level_name,
    }
    if applicant.review_date:
        body["reviewDate"] = applicant.review_date
    if applicant.review_result is not None and applicant.review_status == "completed":
        body["reviewResult"] = applicant.review_result
    return web.json_response(body)


async def move_to_level(request: web.Request) -> web.Response:
    applicant = _applicant(request)
    name = request.query.get("name", "")
    if applicant is None:
        return _error(404, "Applicant not found")
    if not name:
        return _error(400, "name is required")
    applicant.level_name = name
    return web.json_response(applicant.public())


async def request_check(request: web.Request) -> web.Response:
    """`status/pending`: idempotent while a check is under way."""
    state = request.app[STATE]
    applicant = _applicant(request)
    if applicant is None:
        return _error(404, "Applicant not found")
    if not applicant.id_docs:
        return _error(400, "Documents are missing", 1001)
    if applicant.review_status == "pending":
        return web.json_response({"ok": 1})
    if (
        applicant.review_status == "completed"
        and (applicant.review_result or {}).get("reviewRejectType") != "RETRY"
    ):
        return _error(409, "The applicant's review is already completed")
    applicant.review_status = "pending"
    applicant.attempt_cnt += 1
    _notify(state, applicant, "applicantPending")
    outcome = (state.scripted.get(applicant.external_user_id) or [{"reviewAnswer": "GREEN"}])[0]
    if state.scripted.get(applicant.external_user_id):
        state.scripted[applicant.external_user_id].pop(0)
    attempt = applicant.attempt_cnt
    state.spawn(_review_later(state, applicant, outcome, attempt))
    return web.json_response({"ok": 1})


async def test_completed(request: web.Request) -> web.Response:
    state = request.app[STATE]
    applicant = _applicant(request)
    if applicant is None:
        return _error(404, "Applicant not found")
    try:
        outcome = json.loads(await request.read() or b"{}")
    except ValueError:
        return _error(400, "Invalid JSON")
    if not isinstance(outcome, dict) or outcome.get("reviewAnswer") not in ("GREEN", "RED"):
        return _error(400, "reviewAnswer must be GREEN or RED")
    _complete(state, applicant, outcome)
    return web.json_response({"ok": 1})


async def _review_later(
    state: KycVendorState, applicant: Applicant, outcome: dict[str, Any], attempt: int
) -> None:
    await asyncio.sleep(state.review_after)
    if applicant.review_status == "pending" and applicant.attempt_cnt == attempt:
        _complete(state, applicant, outcome)


def _complete(state: KycVendorState, applicant: Applicant, outcome: dict[str, Any]) -> None:
    result: dict[str, Any] = {"reviewAnswer": outcome["reviewAnswer"]}
    if outcome["reviewAnswer"] == "RED":
        result["reviewRejectType"] = outcome.get("reviewRejectType", "RETRY")
        result["rejectLabels"] = list(outcome.get("rejectLabels") or ["DOCUMENT_PAGE_MISSING"])
        result["moderationComment"] = outcome.get("moderationComment", "")
        if outcome.get("clientComment"):
            result["clientComment"] = outcome["clientComment"]
    applicant.review_status = "completed"
    applicant.review_result = result
    applicant.review_date = _now()
    _notify(state, applicant, "applicantReviewed")
    if state.held_back:  # webhook_reorder: the earlier event goes out after this one
        for held in state.held_back:
            state.spawn(_deliver(state, held))
        state.held_back.clear()


def _notify(state: KycVendorState, applicant: Applicant, kind: str) -> None:
    payload: dict[str, Any] = {
        "applicantId": applicant.id,
        "inspectionId": applicant.inspection_id,
        "correlationId": uuid.uuid4().hex,
        "externalUserId": applicant.external_user_id,
        "levelName": applicant.level_name,
        "type": kind,
        "sandboxMode": True,
        "reviewStatus": applicant.review_status,
        "createdAtMs": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "clientId": "broker",
    }
    if kind == "applicantReviewed" and applicant.review_result is not None:
        payload["reviewResult"] = applicant.review_result
    # Sumsub's bodies are compact JSON with its own key order; receivers must verify the bytes as sent.
    body = json.dumps(payload, separators=(",", ":"))
    delivery = Delivery(id=uuid.uuid4().hex[:16], type=kind, applicant_id=applicant.id, body=body)
    state.deliveries[delivery.id] = delivery
    if state.take_fault("webhook_drop"):
        delivery.error = "dropped (fault)"
        return
    if kind == "applicantPending" and state.take_fault("webhook_reorder"):
        state.held_back.append(delivery)
        return
    state.spawn(_deliver(state, delivery))
    if state.take_fault("webhook_duplicate"):
        state.spawn(_deliver(state, delivery))


async def _deliver(state: KycVendorState, delivery: Delivery) -> None:
    delay = state.take_fault("webhook_delay")
    if delay is not None:
        await asyncio.sleep(int(delay.get("delay_ms", 1000)) / 1000)
    raw = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        DIGEST_HEADER: payload_digest(state.webhook_secret, raw),
        DIGEST_ALG_HEADER: "HMAC_SHA256_HEX",
    }
    wait = state.retry_base
    for _ in range(state.retries):
        delivery.attempts += 1
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                async with session.post(state.webhook_url, data=raw, headers=headers) as resp:
                    delivery.status = resp.status
                    if 200 <= resp.status < 300:
                        delivery.delivered = True
                        delivery.error = ""
                        return
                    delivery.error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            delivery.error = type(e).__name__
        await asyncio.sleep(wait)
        wait *= 2


# --- control ---------------------------------------------------------------------------------------


async def script_outcomes(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    external = str(body["externalUserId"])
    outcomes = [dict(o) for o in body.get("outcomes", [])]
    if any(o.get("reviewAnswer") not in ("GREEN", "RED") for o in outcomes):
        return web.json_response({"error": "each outcome needs reviewAnswer GREEN or RED"}, status=400)
    state.scripted.setdefault(external, []).extend(outcomes)
    return web.json_response({"externalUserId": external, "queued": len(state.scripted[external])})


async def add_fault(request: web.Request) -> web.Response:
    body = await request.json()
    kinds = {
        "webhook_drop",
        "webhook_duplicate",
        "webhook_delay",
        "webhook_reorder",
        "api_5xx",
        "api_5xx_after",
    }
    if body.get("kind") not in kinds:
        return web.json_response({"error": f"kind must be one of {sorted(kinds)}"}, status=400)
    request.app[STATE].faults.append({"count": 1, **body})
    return web.json_response({"faults": request.app[STATE].faults})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.json_response({"faults": []})


async def list_webhooks(request: web.Request) -> web.Response:
    return web.json_response([asdict(d) for d in request.app[STATE].deliveries.values()])


async def redeliver(request: web.Request) -> web.Response:
    state = request.app[STATE]
    delivery = state.deliveries.get(request.match_info["id"])
    if delivery is None:
        return web.json_response({"error": "no such delivery"}, status=404)
    await _deliver(state, delivery)
    return web.json_response(asdict(delivery))


async def config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json() if request.can_read_body else {}
    if body.get("webhook_url"):
        state.webhook_url = str(body["webhook_url"])
    for key in ("review_after", "retry_base"):
        if key in body:
            setattr(state, key, float(body[key]))
    if "retries" in body:
        state.retries = int(body["retries"])
    return web.json_response(
        {
            "webhook_url": state.webhook_url,
            "review_after": state.review_after,
            "retries": state.retries,
            "retry_base": state.retry_base,
        }
    )


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for task in list(state.tasks):
        task.cancel()
    state.applicants.clear()
    state.scripted.clear()
    state.faults.clear()
    state.deliveries.clear()
    state.held_back.clear()
    return web.json_response({"ok": True})


def default_webhook_url() -> str:
    return os.environ.get("KYC_WEBHOOK_URL") or (
        f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/api/v1/webhooks/kyc"
    )


def create_app(
    api_key: str | None = None,
    *,
    secret_key: str | None = None,
    webhook_secret: str | None = None,
    webhook_url: str | None = None,
) -> web.Application:
    """`api_key` is the app token; the secret key and webhook secret come from the environment (as the
    broker reads them) or the development defaults."""
    state = KycVendorState(
        app_token=api_key or os.environ.get("KYC_APP_TOKEN") or DEV_SECRETS["kyc_app_token"],
        secret_key=secret_key or os.environ.get("KYC_SECRET_KEY") or DEV_SECRETS["kyc_secret_key"],
        webhook_secret=webhook_secret
        or os.environ.get("KYC_WEBHOOK_SECRET")
        or DEV_SECRETS["kyc_webhook_secret"],
        webhook_url=webhook_url or default_webhook_url(),
    )
    app = web.Application(middlewares=[_signed], client_max_size=10 * 1024 * 1024)
    app[STATE] = state

    async def _cancel_tasks(app: web.Application) -> None:
        for task in list(state.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*state.tasks, return_exceptions=True)

    app.on_cleanup.append(_cancel_tasks)
    r = app.router
    r.add_post("/resources/applicants", create_applicant)
    r.add_get("/resources/applicants/{id}/one", get_applicant)
    r.add_post("/resources/applicants/{id}/info/idDoc", add_id_doc)
    r.add_get("/resources/applicants/{id}/requiredIdDocsStatus", required_docs_status)
    r.add_get("/resources/applicants/{id}/status", review_status)
    r.add_post("/resources/applicants/{id}/status/pending", request_check)
    r.add_post("/resources/applicants/{id}/status/testCompleted", test_completed)
    r.add_post("/resources/applicants/{id}/moveToLevel", move_to_level)
    r.add_post("/_control/outcomes", script_outcomes)
    r.add_post("/_control/faults", add_fault)
    r.add_delete("/_control/faults", clear_faults)
    r.add_get("/_control/webhooks", list_webhooks)
    r.add_post("/_control/webhooks/{id}/redeliver", redeliver)
    r.add_post("/_control/config", config)
    r.add_post("/_control/reset", reset)
    return app


def _cli(argv: list[str] | None = None) -> int:
    """A tester's console for the vendor of `make run`: script outcomes, play faults, list webhooks."""
    import argparse
    import urllib.request

    parser = argparse.ArgumentParser(prog="python -m sandbox.kyc")
    parser.add_argument(
        "--url", default=f"http://127.0.0.1:{int(os.environ.get('SANDBOX_PORT', '8100')) + 6}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    outcome = sub.add_parser("outcome", help="the next review of a customer (our user id)")
    outcome.add_argument("external_user_id")
    outcome.add_argument("--answer", choices=["GREEN", "RED"], default="GREEN")
    outcome.add_argument("--reject-type", choices=["RETRY", "FINAL"], default="RETRY")
    outcome.add_argument("--label", action="append", default=[])
    outcome.add_argument("--comment", default="")
    fault = sub.add_parser(
        "fault", help="webhook_drop, webhook_duplicate, webhook_delay, webhook_reorder, ..."
    )
    fault.add_argument("kind")
    fault.add_argument("--count", type=int, default=1)
    sub.add_parser("webhooks", help="list webhook deliveries")
    args = parser.parse_args(argv)
    if args.command == "outcome":
        review: dict[str, Any] = {"reviewAnswer": args.answer}
        if args.answer == "RED":
            review.update(
                reviewRejectType=args.reject_type,
                rejectLabels=args.label or ["BAD_PROOF_OF_IDENTITY"],
                moderationComment=args.comment,
            )
        path, body = "/_control/outcomes", {"externalUserId": args.external_user_id, "outcomes": [review]}
    elif args.command == "fault":
        path, body = "/_control/faults", {"kind": args.kind, "count": args.count}
    else:
        path, body = "/_control/webhooks", None
    request = urllib.request.Request(
        args.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local sandbox URL)
        sys.stdout.write(response.read().decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
