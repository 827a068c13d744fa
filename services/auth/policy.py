"""Tunable auth parameters, with the seed's values (§7) as defaults. Tests pass smaller ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """`max_failures` failures within `window` lock the key for `base_delay`; every further failure
    after that doubles the delay (up to `max_delay`) until `window` passes quietly or a login succeeds."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)

    def delay(self, failures: int) -> timedelta:
        over = max(0, failures - self.max_failures)
        return min(self.base_delay * (2 ** min(over, 30)), self.max_delay)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Token lifetimes, JWT issuer/audience, lock-out rules and password history depth."""

    access_ttl: timedelta = timedelta(hours=1)
    refresh_ttl: timedelta = timedelta(days=7)
    email_token_ttl: timedelta = timedelta(hours=24)
    issuer: str = "broker-api"
    audience: str = "broker-customers"
    password_history: int = 5
    # Per account: the seed's alert threshold (5 failures in 15 minutes).
    account_lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    # Per IP: looser, since many customers can share one address (offices, mobile carriers' NAT).
    ip_lockout: LockoutPolicy = field(default_factory=lambda: LockoutPolicy(max_failures=20))
    # Per user's second factor: 5 wrong codes and the 10^6 code space stays out of reach.
    totp_lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    totp_issuer: str = "Broker"
    # Password reset: the emailed token's lifetime; how many reset emails one address receives before
    # a pause (the answer stays the same, so the limit reveals nothing); requests per client address.
    reset_token_ttl: timedelta = timedelta(minutes=30)
    reset_emails: LockoutPolicy = field(
        default_factory=lambda: LockoutPolicy(
            max_failures=3, window=timedelta(hours=1), base_delay=timedelta(minutes=15)
        )
    )
    reset_requests_per_ip: LockoutPolicy = field(
        default_factory=lambda: LockoutPolicy(
            max_failures=10, window=timedelta(hours=1), base_delay=timedelta(minutes=15)
        )
    )
