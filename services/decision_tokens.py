"""Proof that a human (or our verified webhook path) made a decision in a saga.

Anyone who can reach Temporal can send a signal with any `approver_id` in it, so an id proves nothing.
The API (after a TOTP check of the staff user) or `python -m cli approval-token` (after the same check)
signs a short-lived token naming the staff user, the subject (a withdrawal or an order) and the action;
the saga verifies it in an activity before the decision counts. The bank webhook route signs the payout
outcome it verified the bank's signature on, so a `payout_settled` signal counts only when it came
through that path.

Subjects: a withdrawal (claim `wid`: approve, reject, resolve_*, payout_*), an order (claim `oid`: ops'
word on an unknown placement, `placement_found` bound to the venue order id or `placement_absent` bound
to ops' note), a KYC submission (claim `kid`: compliance's `kyc_approve` / `kyc_reject`) or an AML case
(claim `cid`: compliance's `aml_case_*` decisions in the SAR workflow). A token names
exactly one subject, so it can never pass for another kind.

The key is derived from `JWT_SECRET` with its own label (HMAC-SHA256), so these tokens can never pass as
login tokens (different key and audience) and no new secret has to be managed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
AUDIENCE = "withdrawal-decision"
ISSUER = "broker"
DEFAULT_TTL = timedelta(minutes=5)
# Compliance's decision on a withdrawal held for review by AML monitoring (signal `compliance_decision`).
AML_WITHDRAWAL_ACTIONS = frozenset({"aml_clear", "aml_decline"})
# What a token can authorise. `payout_completed` / `payout_failed` come only from the bank webhook route.
WITHDRAWAL_ACTIONS = (
    frozenset({"approve", "reject", "resolve_paid", "resolve_not_paid", "payout_completed", "payout_failed"})
    | AML_WITHDRAWAL_ACTIONS
)
# Ops' word on an order placement whose outcome the venue has not shown (the order saga).
ORDER_ACTIONS = frozenset({"placement_found", "placement_absent"})
# Compliance's decision on a KYC submission in review (the KYC saga; claim `kid`).
KYC_ACTIONS = frozenset({"kyc_approve", "kyc_reject"})
# Compliance's decisions on an AML case (the SAR workflow; claim `cid`).
CASE_ACTIONS = frozenset(
    {"aml_case_clear", "aml_case_decline", "aml_case_file_sar", "aml_case_freeze", "aml_case_nca_refused",
     "aml_case_nca_consented"}
)  # fmt: skip
ACTIONS = WITHDRAWAL_ACTIONS | ORDER_ACTIONS | KYC_ACTIONS | CASE_ACTIONS
_CLAIMS = ("wid", "oid", "kid", "cid")
_LABEL = b"broker/withdrawal-decision-token/v1"


class ProofInvalid(Exception):
    """The token is missing, forged, expired or for another user, withdrawal or action: refuse the
    decision and audit the attempt; nothing else to do."""


@dataclass(frozen=True, slots=True)
class DecisionTokens:
    key: bytes
    ttl: timedelta = DEFAULT_TTL

    @classmethod
    def from_secret(cls, secret: str, ttl: timedelta = DEFAULT_TTL) -> DecisionTokens:
        return cls(hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest(), ttl)

    def issue(
        self,
        *,
        actor_id: uuid.UUID | None,
        action: str,
        now: datetime,
        detail: str = "",
        withdrawal_id: uuid.UUID | None = None,
        order_id: uuid.UUID | None = None,
        kyc_submission_id: uuid.UUID | None = None,
        case_id: uuid.UUID | None = None,
    ) -> str:
        """A token for `actor_id` (a staff user; None: the webhook path) to take `action` on one
        withdrawal or one order (exactly one of the two).

        `detail` binds extra facts (e.g. the bank's payout id) so a token can't be reused for another one."""
        claim, subject = _subject(action, withdrawal_id, order_id, kyc_submission_id, case_id)
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(actor_id) if actor_id else "webhook",
            claim: str(subject),
            "act": action,
            "det": detail,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(payload, self.key, algorithm=ALGORITHM)

    def verify(
        self,
        token: str,
        *,
        actor_id: uuid.UUID | None,
        action: str,
        now: datetime,
        detail: str = "",
        withdrawal_id: uuid.UUID | None = None,
        order_id: uuid.UUID | None = None,
        kyc_submission_id: uuid.UUID | None = None,
        case_id: uuid.UUID | None = None,
    ) -> None:
        """Raise `ProofInvalid` unless `token` authorises exactly this actor, subject and action now."""
        claim, subject = _subject(action, withdrawal_id, order_id, kyc_submission_id, case_id)
        if not token:
            raise ProofInvalid("no proof: a bare id is not a decision")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False},
            )
        except jwt.PyJWTError as e:
            raise ProofInvalid(f"the token is not valid: {type(e).__name__}") from e
        # Expiry against the caller's clock (the activity's), not the library's.
        if int(claims["exp"]) < int(now.timestamp()):
            raise ProofInvalid("the token has expired")
        expected_sub = str(actor_id) if actor_id else "webhook"
        if claims.get("sub") != expected_sub:
            raise ProofInvalid("the token was issued to someone else")
        if claims.get(claim) != str(subject) or any(other in claims for other in _CLAIMS if other != claim):
            kind = {"wid": "withdrawal", "oid": "order", "kid": "KYC submission", "cid": "AML case"}[claim]
            raise ProofInvalid(f"the token is for another {kind}")
        if claims.get("act") != action:
            raise ProofInvalid("the token is for another action")
        if claims.get("det", "") != detail:
            raise ProofInvalid("the token is for another outcome")


def _subject(
    action: str,
    withdrawal_id: uuid.UUID | None,
    order_id: uuid.UUID | None,
    kyc_submission_id: uuid.UUID | None = None,
    case_id: uuid.UUID | None = None,
) -> tuple[str, uuid.UUID]:
    """The claim naming the token's subject, checked against the action's kind."""
    if sum(x is not None for x in (withdrawal_id, order_id, kyc_submission_id, case_id)) != 1:
        raise ValueError("a decision token names exactly one withdrawal, order, KYC submission or AML case")
    if case_id is not None:
        if action not in CASE_ACTIONS:
            raise ValueError(f"unknown AML case action {action!r}")
        return "cid", case_id
    if kyc_submission_id is not None:
        if action not in KYC_ACTIONS:
            raise ValueError(f"unknown KYC action {action!r}")
        return "kid", kyc_submission_id
    if withdrawal_id is not None:
        if action not in WITHDRAWAL_ACTIONS:
            raise ValueError(f"unknown withdrawal action {action!r}")
        return "wid", withdrawal_id
    assert order_id is not None
    if action not in ORDER_ACTIONS:
        raise ValueError(f"unknown order action {action!r}")
    return "oid", order_id
