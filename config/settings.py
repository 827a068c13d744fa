"""One pydantic-settings class for every process (API, workers, dev stack, CLI).

Values come from environment variables (prefix-free, upper case) and an optional `.env`.
Secrets have development defaults so `make run` works with nothing set; in production mode
the process refuses to start while any secret is a development value, short or low in entropy,
because a weak secret in production is worse than a crash at boot.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every secret's development default starts with this marker so production can spot it.
DEV_MARKER = "dev-only-"

DEV_SECRETS: dict[str, str] = {
    "jwt_secret": f"{DEV_MARKER}jwt-signing-key-change-me-0123456789abcdef",
    "binance_api_key": f"{DEV_MARKER}binance-key",
    "binance_secret": f"{DEV_MARKER}binance-secret",
    "kraken_api_key": f"{DEV_MARKER}kraken-key",
    # Kraken secrets are base64; this one decodes to "dev-only-kraken-secret".
    "kraken_secret": "ZGV2LW9ubHkta3Jha2VuLXNlY3JldA==",
    "otc_api_key": f"{DEV_MARKER}otc-key",
    "bank_api_key": f"{DEV_MARKER}bank-key",
    "bank_webhook_secret": f"{DEV_MARKER}bank-webhook-secret",
    "sendgrid_api_key": f"SG.{DEV_MARKER}sendgrid-key",
    "email_token_secret": f"{DEV_MARKER}email-token-secret",
    # Fernet keys (url-safe base64 of 32 bytes) for TOTP secrets at rest; this one decodes to
    # "dev-only-totp-encryption-key-32b".
    "totp_encryption_keys": "ZGV2LW9ubHktdG90cC1lbmNyeXB0aW9uLWtleS0zMmI=",
    # The KYC vendor (Sumsub's protocol): app token and secret key sign our requests; the webhook secret
    # signs its webhooks (X-Payload-Digest).
    "kyc_app_token": f"{DEV_MARKER}kyc-app-token",
    "kyc_secret_key": f"{DEV_MARKER}kyc-secret-key",
    "kyc_webhook_secret": f"{DEV_MARKER}kyc-webhook-secret",
    # Twilio (SMS): the account's auth token authenticates our requests and signs its status callbacks.
    "twilio_auth_token": f"{DEV_MARKER}twilio-auth-token",
}

# Secrets we generate ourselves must be long; keys a provider issues (venue, bank, SendGrid API keys)
# come in the provider's own format, so for those a shorter minimum applies.
OWN_SECRETS = {"jwt_secret", "email_token_secret", "bank_webhook_secret", "totp_encryption_keys"}
MIN_OWN_SECRET_CHARS = 32
MIN_ISSUED_KEY_CHARS = 20
# Shannon entropy of the characters, in bits per character: random hex scores ~4, random base64 ~5.5,
# "changemechangeme…" ~2.8, a repeated character 0.
MIN_BITS_PER_CHAR = 3.0
LOCAL_HOSTS = {"localhost", "localhost.localdomain", ""}


def bits_per_char(value: str) -> float:
    """Shannon entropy of `value`'s character distribution (a cheap test for typed-in, patterned secrets)."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _decoded(value: str) -> str:
    """`value` base64-decoded when it is base64 (Kraken and Fernet keys are), else ''."""
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True).decode(
            "utf-8", "replace"
        )
    except (binascii.Error, ValueError):
        return ""


def is_periodic(value: str) -> bool:
    """True when `value` is a shorter piece repeated ("abcabcabc…", "0123456789" * 4)."""
    n = len(value)
    return any(value == (value[:p] * (n // p + 1))[:n] for p in range(1, n // 2 + 1))


def secret_weakness(name: str, value: str) -> str | None:
    """Why `value` is not fit to be the production `name` secret, or None when it is."""
    if not value.strip():
        return "empty"
    minimum = MIN_OWN_SECRET_CHARS if name in OWN_SECRETS else MIN_ISSUED_KEY_CHARS
    marker = DEV_MARKER.rstrip("-")
    # Several comma-separated keys (rotation) are each judged alone.
    for part in (p.strip() for p in (value.split(",") if name == "totp_encryption_keys" else [value])):
        if marker in part.lower() or marker in _decoded(part).lower():
            return "a development value"
        if len(part) < minimum:
            return f"shorter than {minimum} characters"
        if bits_per_char(part) < MIN_BITS_PER_CHAR or is_periodic(part):
            return "low in entropy (patterned or repeated characters)"
    return None


def is_local_url(url: str) -> bool:
    """True for URLs customers could not open: localhost, loopback, unspecified or no host at all."""
    host = (urlsplit(url).hostname or "").lower()
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified or address.is_private or address.is_link_local


class Settings(BaseSettings):
    """Runtime configuration. Field names map to environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"

    # Infrastructure. Empty DATABASE_URL / TEMPORAL_ADDRESS means "start the local one".
    database_url: str = ""
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_cert_path: str = ""
    temporal_tls_key_path: str = ""
    temporal_api_key: str = ""

    # Processes and their PostgreSQL connections (README "Connection budget"). Every API and worker
    # process checks at start that API_PROCESSES x (its pools) + WORKER_PROCESSES x (theirs) +
    # DB_CONNECTION_RESERVE fits the server's max_connections, and refuses to start when it does not.
    api_processes: int = Field(default=1, ge=1)
    worker_processes: int = Field(default=1, ge=1)
    api_db_pool_size: int = Field(default=10, ge=1)
    api_db_max_overflow: int = Field(default=20, ge=0)
    api_rate_limit_pool_size: int = Field(default=4, ge=1)  # the shared rate limits' own connections
    worker_db_pool_size: int = Field(default=20, ge=1)  # the ledger's group commit draws from this pool too
    worker_db_max_overflow: int = Field(default=20, ge=0)
    # Superuser slots, migrations, the CLI, ops' psql, monitoring: connections no process pool may take.
    db_connection_reserve: int = Field(default=10, ge=0)
    # Per task queue a worker serves (Temporal's own defaults): how many tasks run at once.
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2)
    worker_max_concurrent_local_activities: int = Field(default=100, ge=1)
    # How often each API process deletes rate-limit windows whose hits have all expired.
    rate_limit_sweep_seconds: float = Field(default=60, gt=0)
    # Request limits (docs/architecture.md §7), shared by every API process through PostgreSQL.
    rate_limit_anonymous_per_minute: int = Field(default=100, ge=1)  # per client IP, unauthenticated
    rate_limit_user_per_minute: int = Field(default=1000, ge=1)  # per customer
    rate_limit_withdrawals_per_hour: int = Field(default=10, ge=1)  # per customer
    # The WebSocket feed (api/routes/ws.py): live sockets per customer per API process, and messages a
    # client may send per second per socket (docs/architecture.md §7: 100; over it: close 1008).
    ws_max_connections_per_customer: int = Field(default=5, ge=1)
    ws_max_messages_per_second: int = Field(default=100, ge=1)
    # Price alerts (services/price_alerts.py): how many a customer may keep, the hysteresis band (a
    # fraction of the alert's price the market must move back before the alert re-arms), the cooldown
    # between two firings of one alert, and how often the `ops-price-alerts` schedule checks them.
    price_alert_limit_per_customer: int = Field(default=20, ge=1)
    price_alert_band: Decimal = Field(default=Decimal("0.005"), gt=0, lt=1)
    price_alert_cooldown_seconds: float = Field(default=900, ge=0)
    price_alert_check_seconds: float = Field(default=10, gt=0)

    # Local ports (dev stack). Each is a setting so two stacks can coexist.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    postgres_port: int = 5433
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    sandbox_port: int = 8100
    local_dir: str = ".local"

    # Secrets (development defaults, refused in production).
    jwt_secret: str = DEV_SECRETS["jwt_secret"]
    binance_api_key: str = DEV_SECRETS["binance_api_key"]
    binance_secret: str = DEV_SECRETS["binance_secret"]
    kraken_api_key: str = DEV_SECRETS["kraken_api_key"]
    kraken_secret: str = DEV_SECRETS["kraken_secret"]
    otc_api_key: str = DEV_SECRETS["otc_api_key"]
    bank_api_key: str = DEV_SECRETS["bank_api_key"]
    bank_webhook_secret: str = DEV_SECRETS["bank_webhook_secret"]
    sendgrid_api_key: str = DEV_SECRETS["sendgrid_api_key"]
    email_token_secret: str = DEV_SECRETS["email_token_secret"]
    # Comma-separated Fernet keys for TOTP secrets at rest: the first encrypts, all decrypt (rotation:
    # put the new key first, re-encrypt with `python -m cli rotate-totp-keys`, then drop the old one).
    totp_encryption_keys: str = DEV_SECRETS["totp_encryption_keys"]
    kyc_app_token: str = DEV_SECRETS["kyc_app_token"]
    kyc_secret_key: str = DEV_SECRETS["kyc_secret_key"]
    kyc_webhook_secret: str = DEV_SECRETS["kyc_webhook_secret"]

    # Outside-world endpoints. Empty means "the local sandbox" (dev and test only).
    binance_url: str = ""
    kraken_url: str = ""
    otc_url: str = ""
    bank_url: str = ""
    sendgrid_host: str = ""
    kyc_url: str = ""  # the KYC vendor's API (Sumsub: https://api.sumsub.com)
    email_from: str = "no-reply@broker.example"
    # Where customers reach the API (links in emails). Empty: http://localhost:<API_PORT> (dev and test).
    public_base_url: str = ""
    # Addresses of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    # (comma-separated IPs or CIDRs, or "*"). Empty: none, the TCP peer is the client.
    forwarded_allow_ips: str = ""

    # Business parameters.
    customer_taker_fee: Decimal = Decimal("0.0015")
    customer_maker_fee: Decimal = Decimal("0.0010")
    otc_threshold_gbp: Decimal = Decimal("50000")
    withdrawal_approval_threshold_gbp: Decimal = Decimal("10000")
    withdrawal_dual_approval_threshold_gbp: Decimal = Decimal("50000")
    trade_totp_threshold_gbp: Decimal = Decimal("10000")  # orders above this need the second factor (§7)
    house_account_shards: int = Field(default=64, ge=1, le=256)
    # An order placement whose outcome is unknown (sent, no answer) is asked about again and again: first
    # after `order_unknown_recheck_first_s`, doubling up to `order_unknown_recheck_max_s`; still unknown
    # after `order_unknown_attention_after_s` it is flagged NEEDS_ATTENTION (ops alert) and keeps asking.
    order_unknown_recheck_first_s: float = Field(default=2.0, gt=0)
    order_unknown_recheck_max_s: float = Field(default=300.0, gt=0)
    order_unknown_attention_after_s: float = Field(default=900.0, gt=0)
    hold_audit_minutes: float = Field(default=10, gt=0)  # how often holds outliving their owner are sought
    # Payments (deposits, withdrawals, float). Fees are what the customer pays per withdrawal.
    withdrawal_fees: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "GBP": Decimal("0.50"),
            "BTC": Decimal("0.0002"),
            "ETH": Decimal("0.002"),
            "BNB": Decimal("0.002"),
        }
    )
    withdrawal_approval_timeout_hours: float = 72
    withdrawal_halt_poll_seconds: float = 60  # how often a withdrawal waiting on a halt looks again
    withdrawal_settle_poll_seconds: float = 30  # how often to ask the bank/venue when no webhook came
    # "Not found" is unknown, not failure: this many empty lookups in a row, this far apart, before a sent
    # withdrawal is reported absent (NEEDS_ATTENTION, hold kept; ops decide).
    withdrawal_absence_checks: int = Field(default=5, ge=2)
    withdrawal_absence_interval_seconds: float = 60
    # Who bears the venue's network fee on a crypto withdrawal: "house" (booked as a house cost) or
    # "customer" (taken from the customer's withdrawal fee, the house covering any excess).
    crypto_network_fee_payer: Literal["house", "customer"] = "house"
    decision_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)  # staff approval tokens
    # The staff console (api/console): a staff session ends after this long without a request, and at
    # the latest after `console_session_max_seconds`. Staff routes (/console, /api/v1/admin*) answer only
    # addresses in `staff_ip_allowlist` (comma-separated IPs or CIDRs; empty: every address, refused in
    # production). `temporal_ui_url` is where the console links each saga (empty: the local dev UI).
    console_idle_timeout_seconds: int = Field(default=15 * 60, ge=30)
    console_session_max_seconds: int = Field(default=12 * 3600, ge=60)
    staff_ip_allowlist: str = ""
    temporal_ui_url: str = ""
    # A payer account the customer confirmed (TOTP) can receive GBP withdrawals only after this long:
    # time for the confirmation email to reach a customer whose login was taken over. The dev stack
    # sets it short so `make demo` need not wait a day.
    bank_account_cooling_off_seconds: float = Field(default=24 * 3600, ge=0)
    bank_webhook_tolerance_seconds: int = 300
    crypto_provider: str = "binance"  # the omnibus crypto is withdrawn from (docs/architecture.md §5)
    # The omnibus crypto is deposited to: it must mint a fresh address per customer (Kraken does; Binance
    # has one address per coin per account), since deposits are attributed by the address they arrive at.
    crypto_deposit_provider: str = "kraken"
    crypto_deposit_confirmations: int = 2
    crypto_deposit_poll_seconds: int = 30
    # Hot-wallet float per currency (docs/architecture.md §5): alert and request a top-up to target below
    # threshold.
    float_thresholds: dict[str, Decimal] = Field(
        default_factory=lambda: {"BTC": Decimal("3"), "ETH": Decimal("50"), "BNB": Decimal("100")}
    )
    float_targets: dict[str, Decimal] = Field(
        default_factory=lambda: {"BTC": Decimal("5"), "ETH": Decimal("100"), "BNB": Decimal("500")}
    )
    float_check_minutes: int = 5
    # Float transfers between venues (services/treasury.py): above the currency's limit two different staff
    # approve (maker-checker); the saga asks the venues again every `float_transfer_poll_seconds`.
    float_transfer_approval_limits: dict[str, Decimal] = Field(
        default_factory=lambda: {"BTC": Decimal("10"), "ETH": Decimal("200"), "BNB": Decimal("1000")}
    )
    float_transfer_approval_timeout_seconds: float = Field(default=24 * 3600, gt=0)
    float_transfer_poll_seconds: float = Field(default=10, gt=0)
    # Live order books (services/live_books.py): streamed from the venues, priced only while fresh.
    market_data_streams: bool = True  # off: the router reads books by REST per order (as before)
    book_max_age_s: float = Field(default=2.0, gt=0)  # an older book is stale and not priced from the stream
    # Processes sharing one IP's venue limits and one key per venue (API + workers): each gets 1/N of a
    # venue's REST budget and of its key's request counters. Unset: API_PROCESSES + WORKER_PROCESSES.
    market_data_processes: int = Field(default=2, ge=1)
    # Kraken's request limits depend on the account's verification tier (providers/exchanges/kraken.py);
    # "starter" is the strictest, so a wrong guess never exceeds the venue's real limit.
    kraken_account_tier: Literal["starter", "intermediate", "pro"] = "starter"
    # Sanctions and PEP screening (services/screening). Scores are 0-100: below the review band a check is
    # CLEAR; inside it compliance reviews; at or above the freeze band the account is frozen pending review.
    sanctions_data_dir: str = str(
        Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "sanctions"
    )
    screening_review_threshold: int = Field(default=80, ge=1, le=100)
    screening_freeze_threshold: int = Field(default=95, ge=1, le=100)
    screening_candidates_per_name: int = Field(default=40, ge=1)  # blocked listed names scored per customer
    # KYC (services/kyc, workflows/kyc.py): the vendor's level per tier; how long the saga waits for the
    # vendor's webhook before asking itself, how long for a review at all, and for a customer's resubmission.
    kyc_level_names: dict[int, str] = Field(default_factory=lambda: {2: "broker-tier2-id-and-liveness"})
    kyc_vendor_poll_seconds: float = Field(default=300, gt=0)  # first poll; doubles up to the max
    kyc_vendor_poll_max_seconds: float = Field(default=6 * 3600, gt=0)
    kyc_vendor_timeout_seconds: float = Field(default=14 * 24 * 3600, gt=0)
    kyc_resubmit_timeout_seconds: float = Field(default=30 * 24 * 3600, gt=0)
    kyc_document_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # Sanctions list refresh (workflows/screening.py, daily schedule `ops-sanctions-refresh`): each list's
    # files are downloaded from these URLs into `sanctions_download_dir`; an empty URL set means "read
    # `sanctions_data_dir` as it is" (the local stack's shipped files).
    sanctions_list_urls: dict[str, str] = Field(default_factory=dict)  # "ofac/sdn.csv" -> URL, …
    sanctions_download_dir: str = ""
    sanctions_refresh_hours: float = Field(default=24, gt=0)
    # FCA PS23/6 gates before a first trade (services/first_trade_gates.py). None: enforced everywhere but
    # environment=test, where other areas' tests trade with users made straight in the database (the
    # gates' own tests turn it on). Turning it off outside tests is refused.
    first_trade_gates_enforced: bool | None = None
    # Name matching's reference data (rigour's name corpus) loads on first use, 7-17 s in native code that
    # holds the GIL: an API or worker process loads it before it serves or polls, so no request or
    # workflow task stalls behind it. None: everywhere but environment=test (whose many short-lived
    # processes would each pay it; the screening tests load it on first use).
    name_matching_warmup: bool | None = None
    first_trade_cooling_off_seconds: float = Field(default=24 * 3600, gt=0)
    appropriateness_questions_file: str = str(Path(__file__).resolve().parent / "appropriateness.json")
    # Reconciliation (issue 20): every N minutes; drift beyond the asset's tolerance halts its withdrawals.
    reconciliation_interval_minutes: float = 15
    aml_sweep_minutes: float = Field(default=60, gt=0)  # the AML window rules over every customer
    reconciliation_catchup_minutes: float = 60
    reconciliation_tolerances: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "GBP": Decimal("0.10"),
            "BTC": Decimal("0.00001"),
            "ETH": Decimal("0.0001"),
            "BNB": Decimal("0.001"),
        }
    )
    reconciliation_clean_runs_to_resume: int = Field(default=2, ge=1)
    reconciliation_error_runs_to_alert: int = Field(default=3, ge=1)
    # Chain nodes reconciliation reads (empty: the sandbox chain outside production): Esplora for BTC,
    # Ethereum JSON-RPC for ETH and BNB.
    chain_btc_url: str = ""
    chain_eth_url: str = ""
    chain_bnb_url: str = ""
    # Self-custody hot wallets (seed Option B; none by default): currency -> address, balanced on-chain
    # against the house account `wallet:hot`.
    hot_wallets: dict[str, str] = Field(default_factory=dict)
    # GDPR (services/gdpr_*.py): an export is kept until its emailed link expires; closed accounts' personal
    # data is pseudonymised this many years after closure (MLR 2017 reg. 40: five years after the business
    # relationship ends).
    gdpr_export_link_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    gdpr_retention_years: int = Field(default=5, ge=5)
    # Notifications (issue 17, services/notifications): the outbox dispatcher runs in every API and worker
    # process (SKIP LOCKED: they share the work). An in-doubt send is resent only after the provider has
    # not shown it for `notification_unknown_grace_seconds`; a known failure is retried with doubling
    # backoff, `notification_max_attempts` times, then dead-lettered for ops.
    notification_dispatcher: bool = True
    notification_poll_seconds: float = Field(default=1.0, gt=0)
    notification_lease_seconds: float = Field(default=60.0, gt=0)
    notification_max_attempts: int = Field(default=8, ge=1)
    notification_backoff_first_seconds: float = Field(default=2.0, gt=0)
    notification_backoff_max_seconds: float = Field(default=900.0, gt=0)
    notification_unknown_grace_seconds: float = Field(default=300.0, ge=0)
    notification_send_timeout_seconds: float = Field(default=10.0, gt=0)
    # SendGrid's signed Event Webhook: the public key (base64 DER) from SendGrid's settings. The default is
    # the mail sink's development key.
    sendgrid_webhook_public_key: str = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+sLjrQhyowVY3xkXUubts1r+QBGhrOJ6YfBLTXCg9hwElBiQHZ4VeyIylyMDoevp"
        "bInUGOqt4NtDOm+Mitxc2w=="
    )
    sendgrid_webhook_tolerance_seconds: int = 600
    # Twilio (SMS). Empty URL: the local sandbox (sandbox/twilio.py).
    twilio_url: str = ""
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = DEV_SECRETS["twilio_auth_token"]
    twilio_from_number: str = "+447700900000"
    # Ops alerts: the ops mailbox and a Slack-compatible incoming webhook (empty: not sent there).
    ops_alert_email: str = "ops@broker.example"
    ops_alert_webhook_url: str = ""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def dev_defaults_in_use(self) -> list[str]:
        """Names of secrets still holding their development default."""
        return [name for name, default in DEV_SECRETS.items() if getattr(self, name) == default]

    def weak_secrets(self) -> dict[str, str]:
        """Secret name -> why it is not fit for production (empty when all are fit)."""
        found = {name: secret_weakness(name, getattr(self, name)) for name in DEV_SECRETS}
        return {name: why for name, why in found.items() if why is not None}

    @model_validator(mode="after")
    def _derive_market_data_processes(self) -> Settings:
        if "market_data_processes" not in self.model_fields_set:
            self.market_data_processes = self.api_processes + self.worker_processes
        return self

    @model_validator(mode="after")
    def _derive_public_base_url(self) -> Settings:
        if not self.public_base_url and not self.is_production:
            self.public_base_url = f"http://localhost:{self.api_port}"
        return self

    @model_validator(mode="after")
    def _name_matching_warm_outside_tests(self) -> Settings:
        if self.name_matching_warmup is None:
            self.name_matching_warmup = self.environment != "test"
        return self

    @model_validator(mode="after")
    def _first_trade_gates_on_outside_tests(self) -> Settings:
        if self.first_trade_gates_enforced is None:
            self.first_trade_gates_enforced = self.environment != "test"
        elif not self.first_trade_gates_enforced and self.environment != "test":
            raise ValueError(
                "FIRST_TRADE_GATES_ENFORCED=false is only for tests: real customers pass the gates"
            )
        if self.is_production and self.first_trade_cooling_off_seconds < 24 * 3600:
            raise ValueError("production mode needs FIRST_TRADE_COOLING_OFF_SECONDS of at least 24 hours")
        return self

    @model_validator(mode="after")
    def _staff_ip_allowlist_parses(self) -> Settings:
        for part in self.staff_ip_allowlist.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError as e:
                    raise ValueError(
                        f"STAFF_IP_ALLOWLIST: {part.strip()!r} is not an IP address or network"
                    ) from e
        return self

    @model_validator(mode="after")
    def _refuse_weak_settings_in_production(self) -> Settings:
        if self.is_production:
            weak = self.weak_secrets()
            if weak:
                raise ValueError(
                    "production mode refuses weak secrets: "
                    + "; ".join(f"{name.upper()} is {why}" for name, why in sorted(weak.items()))
                )
            if not self.database_url or not self.temporal_address:
                raise ValueError("production mode needs DATABASE_URL and TEMPORAL_ADDRESS")
            if self.forwarded_allow_ips.strip() == "*":
                raise ValueError(
                    "production mode refuses FORWARDED_ALLOW_IPS=*: it lets every client choose its address"
                )
            if not self.staff_ip_allowlist.strip():
                raise ValueError("production mode needs STAFF_IP_ALLOWLIST: the addresses staff work from")
            if is_local_url(self.public_base_url) or urlsplit(self.public_base_url).scheme != "https":
                raise ValueError(
                    "production mode needs PUBLIC_BASE_URL: the https:// address customers reach the API at"
                )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
