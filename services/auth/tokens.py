"""Signed tokens: JWT (HS256) access, refresh, email-verification and password-reset tokens.

Every token carries `typ`, `iss`, `aud`, `iat`, `exp`, `sub` and a random `jti`; decoding requires all of
them and the expected `typ`, so a refresh token is never accepted where an access token is expected (or
the reverse), and a verification link can't be used as either (it is also signed with its own secret).
Access and refresh tokens carry `sid`, the login session they belong to.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from services.auth.errors import TokenInvalid

TokenType = Literal["access", "refresh", "email_verify", "password_reset"]
ALGORITHM = "HS256"
_REQUIRED = ["typ", "iss", "aud", "iat", "exp", "sub", "jti"]


def token_hash(token: str) -> str:
    """What is stored instead of a refresh token: enough to recognise it, useless if the table leaks."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenCodec:
    secret: str | bytes
    issuer: str
    audience: str

    def issue(
        self, typ: TokenType, subject: uuid.UUID, *, now: datetime, ttl: timedelta, **claims: Any
    ) -> str:
        payload = {
            "typ": typ,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(subject),
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_urlsafe(16),
            **claims,
        }
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM)

    def decode(self, token: str, typ: TokenType) -> dict[str, Any]:
        """The verified claims, or `TokenInvalid` naming why (expired, wrong type, anything else)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenInvalid("the token has expired", code="token_expired") from e
        except jwt.PyJWTError as e:
            raise TokenInvalid("the token is not valid") from e
        if claims.get("typ") != typ:
            raise TokenInvalid(f"a {typ} token is required", code="wrong_token_type")
        try:
            claims["sub"] = uuid.UUID(str(claims["sub"]))
            if "sid" in claims:
                claims["sid"] = uuid.UUID(str(claims["sid"]))
        except ValueError as e:
            raise TokenInvalid("the token is not valid") from e
        if typ in ("access", "refresh") and not isinstance(claims.get("sid"), uuid.UUID):
            raise TokenInvalid("the token is not valid")
        return claims

    def peek_subject(self, token: str) -> str | None:
        """The user id of a validly signed, unexpired access token, without touching the database.

        Only for choosing a rate-limit bucket: revocation is checked later, by the route's dependency.
        """
        try:
            return str(self.decode(token, "access")["sub"])
        except TokenInvalid:
            return None
