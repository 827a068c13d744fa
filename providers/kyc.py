"""The KYC vendor (Sumsub's API): applicants, identity documents, checks, review status, webhooks.

One `KycVendorClient` per process (an `httpx.AsyncClient` built once), signing every request the way
Sumsub requires: `X-App-Token`, `X-App-Access-Ts` and `X-App-Access-Sig` = hex HMAC-SHA256(secret key,
ts + METHOD + path-with-query + raw body). The signature covers the exact bytes sent, so it is computed
from the built request (multipart bodies included), never from the arguments.

Errors come in the two kinds the KYC saga reacts to differently: `KycVendorRetryable` (the vendor did not
answer, or answered 5xx/429: the call may or may not have taken effect, and every call here is safe to
repeat) and `KycVendorRefused` (4xx: our request is wrong or the applicant is in the wrong state; retrying
the same call will not help). Webhooks are verified with `verify_digest` on the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from config import Settings

DIGEST_HEADER = "X-Payload-Digest"
DIGEST_ALG_HEADER = "X-Payload-Digest-Alg"
_DIGESTS = {"HMAC_SHA256_HEX": hashlib.sha256, "HMAC_SHA512_HEX": hashlib.sha512}


class KycVendorError(Exception):
    """Base of the vendor errors."""


class KycVendorRetryable(KycVendorError):
    """No answer, 5xx or 429: the outcome is unknown. Every call of this client is idempotent: ask again."""


class KycVendorRefused(KycVendorError):
    """The vendor refused the request (4xx). Don't repeat it unchanged; `status` and `description` say why
    (for staff and logs, never for the customer)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{status}: {description}")
        self.status = status
        self.description = description


class InvalidDigest(Exception):
    """The webhook's X-Payload-Digest is missing or wrong: answer 401 and change nothing."""


@dataclass(frozen=True, slots=True)
class VendorReview:
    """An applicant's review as the vendor reports it (status call or webhook)."""

    status: str  # init | pending | queued | onHold | completed ...
    answer: str | None = None  # GREEN | RED once completed
    reject_type: str | None = None  # RETRY | FINAL for RED
    reject_labels: tuple[str, ...] = ()
    moderation_comment: str = ""  # the vendor's words for the customer (what to fix)
    attempt: int = 0

    @property
    def completed(self) -> bool:
        return self.status == "completed" and self.answer in ("GREEN", "RED")

    @classmethod
    def from_status(cls, body: dict[str, Any]) -> VendorReview:
        result = body.get("reviewResult") or {}
        return cls(
            status=str(body.get("reviewStatus", "")),
            answer=result.get("reviewAnswer"),
            reject_type=result.get("reviewRejectType"),
            reject_labels=tuple(str(x) for x in result.get("rejectLabels") or ()),
            moderation_comment=str(result.get("moderationComment") or ""),
            attempt=int(body.get("attemptCnt") or 0),
        )


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: who it is about and what happened. Treated as a hint: the saga reads the
    applicant's status from the vendor itself before acting, so a stale, duplicated or reordered event
    cannot decide anything."""

    type: str
    applicant_id: str
    external_user_id: str
    review_status: str
    raw: dict[str, Any] = field(default_factory=dict)


def verify_digest(secret: str, body: bytes, digest: str | None, algorithm: str | None = None) -> None:
    """Check X-Payload-Digest (hex HMAC of the raw body as received; default SHA-256)."""
    if not digest:
        raise InvalidDigest("missing X-Payload-Digest")
    hash_fn = _DIGESTS.get(algorithm or "HMAC_SHA256_HEX")
    if hash_fn is None:
        raise InvalidDigest("unsupported digest algorithm")
    expected = hmac.new(secret.encode(), body, hash_fn).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        raise InvalidDigest("digest mismatch")


def parse_webhook(body: bytes) -> WebhookEvent:
    """The event in a verified body; ValueError when it is not a Sumsub applicant event."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("applicantId"), str) or not data.get("type"):
        raise ValueError("not an applicant event")
    return WebhookEvent(
        type=str(data["type"]),
        applicant_id=data["applicantId"],
        external_user_id=str(data.get("externalUserId", "")),
        review_status=str(data.get("reviewStatus", "")),
        raw=data,
    )


def kyc_url(settings: Settings) -> str:
    """The configured vendor; empty means the local sandbox outside production."""
    if settings.kyc_url:
        return settings.kyc_url.rstrip("/")
    if settings.is_production:
        raise RuntimeError("KYC_URL must be set in production")
    return f"http://127.0.0.1:{settings.sandbox_port + 6}"


class KycVendorClient:
    """HTTP client of the vendor's API, with Sumsub's request signing."""

    name = "sumsub"

    def __init__(self, base_url: str, app_token: str, secret_key: str, *, timeout: float = 15.0) -> None:
        self._secret = secret_key.encode()
        self._app_token = app_token
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 15.0) -> KycVendorClient:
        return cls(kyc_url(settings), settings.kyc_app_token, settings.kyc_secret_key, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    def _sign(self, request: httpx.Request) -> None:
        ts = str(int(time.time()))
        body = request.read()
        path = request.url.raw_path.decode()
        sig = hmac.new(
            self._secret, ts.encode() + request.method.encode() + path.encode() + body, hashlib.sha256
        ).hexdigest()
        request.headers["X-App-Token"] = self._app_token
        request.headers["X-App-Access-Ts"] = ts
        request.headers["X-App-Access-Sig"] = sig

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        request = self._http.build_request(method, path, **kwargs)
        self._sign(request)
        try:
            r = await self._http.send(request)
        except httpx.HTTPError as e:
            raise KycVendorRetryable(f"{method} {path.split('?')[0]}: {type(e).__name__}") from e
        if r.status_code >= 500 or r.status_code == 429:
            raise KycVendorRetryable(f"{method} {path.split('?')[0]}: HTTP {r.status_code}")
        if r.status_code >= 400:
            try:
                description = str(r.json().get("description", ""))
            except ValueError:
                description = ""
            raise KycVendorRefused(r.status_code, description or r.reason_phrase)
        return r.json() if r.content else {}

    async def create_applicant(
        self, *, external_user_id: str, level_name: str, info: dict[str, Any] | None = None
    ) -> str:
        """The applicant id for our customer, created once: a repeat (409) reads the existing one."""
        body: dict[str, Any] = {"externalUserId": external_user_id}
        if info:
            body["info"] = info
        try:
            created = await self._call(
                "POST", f"/resources/applicants?levelName={quote(level_name)}", json=body
            )
            return str(created["id"])
        except KycVendorRefused as e:
            if e.status != 409:
                raise
        found = await self._call(
            "GET", f"/resources/applicants/-;externalUserId={quote(external_user_id)}/one"
        )
        return str(found["id"])

    async def add_id_document(
        self,
        applicant_id: str,
        *,
        id_doc_type: str,
        country: str,
        filename: str,
        content: bytes,
        content_type: str,
    ) -> str:
        """Upload one identity document image; returns the vendor's image id."""
        metadata = json.dumps({"idDocType": id_doc_type, "country": country})
        request_path = f"/resources/applicants/{quote(applicant_id)}/info/idDoc"
        request = self._http.build_request(
            "POST",
            request_path,
            data={"metadata": metadata},
            files={"content": (filename, content, content_type)},
        )
        self._sign(request)
        try:
            r = await self._http.send(request)
        except httpx.HTTPError as e:
            raise KycVendorRetryable(f"POST idDoc: {type(e).__name__}") from e
        if r.status_code >= 500 or r.status_code == 429:
            raise KycVendorRetryable(f"POST idDoc: HTTP {r.status_code}")
        if r.status_code >= 400:
            raise KycVendorRefused(r.status_code, str(r.json().get("description", "")))
        return r.headers.get("X-Image-Id", "")

    async def request_check(self, applicant_id: str) -> None:
        """Ask the vendor to review the applicant. Idempotent: while a check is under way the vendor accepts
        the repeat, and once it has completed it answers 409, which here means "already done" (a repeat
        after an answer we lost: the review is read with `review`, never requested twice)."""
        try:
            await self._call("POST", f"/resources/applicants/{quote(applicant_id)}/status/pending")
        except KycVendorRefused as e:
            if e.status != 409:
                raise

    async def review(self, applicant_id: str) -> VendorReview:
        return VendorReview.from_status(
            await self._call("GET", f"/resources/applicants/{quote(applicant_id)}/status")
        )

    async def required_docs(self, applicant_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", f"/resources/applicants/{quote(applicant_id)}/requiredIdDocsStatus"
        )
        return result

    async def move_to_level(self, applicant_id: str, level_name: str) -> None:
        await self._call(
            "POST", f"/resources/applicants/{quote(applicant_id)}/moveToLevel?name={quote(level_name)}"
        )
