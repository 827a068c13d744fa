"""Proof that a human (or our verified webhook path) made a withdrawal decision.

Anyone who can reach Temporal can send a signal with any `approver_id` in it, so an id proves nothing.
The API (after a TOTP check of the staff user) or `python -m cli approval-token` (after the same check)
signs a short-lived token naming the staff user, the withdrawal and the action; the withdrawal saga
verifies it in an activity before the decision counts. The bank webhook route signs the payout outcome it
verified the bank's signature on, so a `payout_settled` signal counts only when it came through that path.

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
# What a token can authorise. `payout_completed` / `payout_failed` come only from the bank webhook route.
ACTIONS = frozenset(
    {"approve", "reject", "resolve_paid", "resolve_not_paid", "payout_completed", "payout_failed"}
)
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
        withdrawal_id: uuid.UUID,
        action: str,
        now: datetime,
        detail: str = "",
    ) -> str:
        """A token for `actor_id` (a staff user; None: the webhook path) to take `action` on one withdrawal.

        `detail` binds extra facts (e.g. the bank's payout id) so a token can't be reused for another one."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(actor_id) if actor_id else "webhook",
            "wid": str(withdrawal_id),
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
        withdrawal_id: uuid.UUID,
        action: str,
        now: datetime,
        detail: str = "",
    ) -> None:
        """Raise `ProofInvalid` unless `token` authorises exactly this actor, withdrawal and action now."""
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
        if claims.get("wid") != str(withdrawal_id):
            raise ProofInvalid("the token is for another withdrawal")
        if claims.get("act") != action:
            raise ProofInvalid("the token is for another action")
        if claims.get("det", "") != detail:
            raise ProofInvalid("the token is for another outcome")
