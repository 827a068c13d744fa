"""What a venue is to us: where it lives and how to reach it (`ExchangeConfig`, `build_adapters` from
the settings), and what it does its own way (`VenueTraits`).

`VenueTraits` is each venue class's capability table (as freqtrade's `_ft_has`): the differences that
are data. The differences that are behaviour are methods the venue's class overrides
(providers/exchanges/binance.py, providers/exchanges/kraken.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from config.settings import Settings
from providers.exchanges.error_mapping import VenueErrorWords

if TYPE_CHECKING:
    from providers.exchanges.base import ExecutionAdapter


@dataclass(frozen=True)
class ExchangeConfig:
    """One provider: our name for it, ccxt's class id, credentials and where it lives."""

    name: str
    exchange_id: str  # ccxt class: "binance", "kraken", "bitstamp"
    api_key: str
    secret: str
    base_url: str = ""  # empty: the real venue; else a sandbox (scheme://host:port, no path)
    uid: str = ""
    timeout_ms: int = 10_000
    enable_rate_limit: bool = True  # the venue's request limits, kept client-side (see each venue's class)
    lookup_attempts: int = 4  # lookups before an order is declared absent (venues lag)
    lookup_backoff_s: float = 0.25  # first pause between lookups; doubles each time
    options: dict[str, Any] = field(default_factory=dict)
    account_tier: str = ""  # the venue's account tier where its limits depend on it (Kraken); "": default
    key_share: int = 1  # processes using this API key at once: each keeps to 1/N of the key's limits


@dataclass(frozen=True, slots=True)
class WithdrawalCapabilities:
    """How a venue names our withdrawals, so it can be asked about one again.

    `client_id_param`: the send parameter that carries our id (Binance's `withdrawOrderId`), None where
    the venue keeps none. `lookup_by`: "client_id" (the venue's history filters by our id, so even a send
    whose answer was lost can be found) or "venue_ref" (only the venue's own reference, Kraken's
    `refid`, finds it: known only when the send answered; a lost answer stays unknown)."""

    client_id_param: str | None
    lookup_by: Literal["client_id", "venue_ref"]


@dataclass(frozen=True, slots=True)
class VenueTraits:
    """A venue's capability table: what it does its own way that is data, not behaviour.

    The defaults describe a venue we know only through ccxt's unified API."""

    withdrawals: WithdrawalCapabilities = WithdrawalCapabilities(client_id_param=None, lookup_by="venue_ref")
    errors: VenueErrorWords = VenueErrorWords()
    # Cancelling answers with the whole order (Binance); otherwise the order is read again afterwards.
    cancel_answers_order: bool = False
    # Withdrawals go to a destination registered at the venue under a key named by the address (Kraken).
    withdraws_to_key: bool = False
    # One trade-history read covers every pair (Kraken's TradesHistory); otherwise it is read per symbol
    # (Binance's myTrades).
    trade_history_all_pairs: bool = False


def exchange_spec(config: ExchangeConfig) -> dict[str, Any]:
    """ccxt's constructor arguments every venue shares (credentials, timeout, throttle, options)."""
    spec: dict[str, Any] = {
        "apiKey": config.api_key,
        "secret": config.secret,
        "timeout": config.timeout_ms,
        "enableRateLimit": config.enable_rate_limit,
    }
    if config.uid:
        spec["uid"] = config.uid
    if config.options:
        spec["options"] = dict(config.options)
    return spec


# Sandbox ports relative to SANDBOX_PORT (devstack.stack.SANDBOX_OFFSETS).
_SANDBOX_OFFSETS = {"binance": 0, "kraken": 1, "otc": 2}


def _url(settings: Settings, name: str, configured: str) -> str:
    """The configured URL; if empty, the local sandbox outside production, the real venue in production."""
    if configured:
        return configured
    if settings.is_production:
        return ""
    return f"http://127.0.0.1:{settings.sandbox_port + _SANDBOX_OFFSETS[name]}"


def sandbox_or_configured_url(settings: Settings, name: str) -> str:
    """Where venue `name` lives for this process (the configured URL, a local sandbox, or the real one)."""
    return _url(settings, name, getattr(settings, f"{name}_url"))


def build_adapters(settings: Settings, **overrides: Any) -> dict[str, ExecutionAdapter]:
    """One adapter per configured provider (binance, kraken, otc), not yet loaded, each of its venue's
    class. Every process that trades shares each venue key's limits with the others
    (`market_data_processes`: the API and the workers), so each keeps to its share.

    `overrides` are passed to every `ExchangeConfig` (e.g. `timeout_ms`, `enable_rate_limit`).
    """
    from providers.exchanges.ccxt_adapter import CcxtAdapter  # builds each venue's own class
    from providers.exchanges.otc_adapter import OtcAdapter

    shared = {"key_share": settings.market_data_processes, **overrides}
    adapters: dict[str, ExecutionAdapter] = {
        "binance": CcxtAdapter(
            ExchangeConfig(
                name="binance",
                exchange_id="binance",
                api_key=settings.binance_api_key,
                secret=settings.binance_secret,
                base_url=_url(settings, "binance", settings.binance_url),
                **shared,
            )
        ),
        "kraken": CcxtAdapter(
            ExchangeConfig(
                name="kraken",
                exchange_id="kraken",
                api_key=settings.kraken_api_key,
                secret=settings.kraken_secret,
                base_url=_url(settings, "kraken", settings.kraken_url),
                account_tier=settings.kraken_account_tier,
                **shared,
            )
        ),
    }
    otc_url = _url(settings, "otc", settings.otc_url)
    if otc_url:
        adapters["otc"] = OtcAdapter(name="otc", base_url=otc_url, api_key=settings.otc_api_key)
    return adapters
