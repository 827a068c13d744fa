"""One pydantic-settings class for every process (API, workers, dev stack, CLI).

Values come from environment variables (prefix-free, upper case) and an optional `.env`.
Secrets have development defaults so `make run` works with nothing set; in production mode
the process refuses to start while any of those defaults is still in use, because a
dev secret in production is worse than a crash at boot.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

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
}


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

    # Outside-world endpoints. Empty means "the local sandbox" (dev and test only).
    binance_url: str = ""
    kraken_url: str = ""
    otc_url: str = ""
    bank_url: str = ""
    sendgrid_host: str = ""
    email_from: str = "no-reply@broker.example"
    public_base_url: str = "http://localhost:8000"

    # Business parameters.
    customer_taker_fee: Decimal = Decimal("0.0015")
    customer_maker_fee: Decimal = Decimal("0.0010")
    otc_threshold_gbp: Decimal = Decimal("50000")
    withdrawal_approval_threshold_gbp: Decimal = Decimal("10000")
    withdrawal_dual_approval_threshold_gbp: Decimal = Decimal("50000")
    trade_totp_threshold_gbp: Decimal = Decimal("10000")  # orders above this need the second factor (§7)
    house_account_shards: int = Field(default=64, ge=1, le=256)
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
    bank_webhook_tolerance_seconds: int = 300
    crypto_provider: str = "binance"  # the omnibus crypto is withdrawn from (seed §5)
    # The omnibus crypto is deposited to: it must mint a fresh address per customer (Kraken does; Binance
    # has one address per coin per account), since deposits are attributed by the address they arrive at.
    crypto_deposit_provider: str = "kraken"
    crypto_deposit_confirmations: int = 2
    crypto_deposit_poll_seconds: int = 30
    # Hot-wallet float per currency (seed §5): alert and request a top-up to target below threshold.
    float_thresholds: dict[str, Decimal] = Field(
        default_factory=lambda: {"BTC": Decimal("3"), "ETH": Decimal("50"), "BNB": Decimal("100")}
    )
    float_targets: dict[str, Decimal] = Field(
        default_factory=lambda: {"BTC": Decimal("5"), "ETH": Decimal("100"), "BNB": Decimal("500")}
    )
    float_check_minutes: int = 5
    # Reconciliation (issue 20): every N minutes; drift beyond the asset's tolerance halts its withdrawals.
    reconciliation_interval_minutes: float = 15
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

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def dev_defaults_in_use(self) -> list[str]:
        """Names of secrets still holding their development default."""
        return [name for name, default in DEV_SECRETS.items() if getattr(self, name) == default]

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> Settings:
        if self.is_production:
            in_use = self.dev_defaults_in_use()
            if in_use:
                raise ValueError(
                    "production mode refuses development defaults for: " + ", ".join(sorted(in_use))
                )
            if not self.database_url or not self.temporal_address:
                raise ValueError("production mode needs DATABASE_URL and TEMPORAL_ADDRESS")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
