"""The matching engine behind every sandbox venue: books, the random walk, orders, balances, custody.

One `Venue` holds the broker's omnibus account at one exchange. The protocol front ends
(`sandbox.binance`, `sandbox.kraken`) translate HTTP requests into calls on it, so both venues share
the same, tested behaviour and differ only in wire format, prices and fees.

Design choices, and why:
- Exact `Decimal` arithmetic everywhere; the walk moves by whole price ticks drawn from a seeded
  `random.Random`, so no float ever touches a price and a seed reproduces a run.
- A synthetic book is regenerated around the mid after every walk step, with level sizes that shrink
  geometrically away from the mid: a large market order walks several levels and pays for its size.
  Liquidity taken by an order stays taken until the next step, so two quick orders see a thinner book.
- A book set explicitly through the control API is *pinned*: it never walks and is only changed by
  fills or by another control call, so tests (ours and the router's) can rely on exact levels.
- Resting limit orders are not shown in the book (the broker is the only client, so showing them
  would only let it trade against itself); they fill at their limit price, as makers, when the
  opposite best price crosses them.
- The venue charges fees in the currency the venue really uses: Binance in the asset received,
  Kraken in the quote currency (`fee_in`).
"""

from __future__ import annotations

import asyncio
import decimal
import itertools
import random
import secrets
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, Literal

# 36-digit amounts need more than the default 28 significant digits.
decimal.getcontext().prec = 60

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal("0.0001")
FEE_QUANTUM = Decimal("0.00000001")  # venues account fees to 8 decimal places

# The sandbox chain (sandbox/chain.py) listens here when it runs in this process: a withdrawal is
# broadcast to it, a deposit comes from it. Called as listener(kind, event) with kind "withdrawal"|"deposit".
CHAIN_LISTENERS: list[Callable[[str, dict[str, Any]], None]] = []
# Every deposit address a venue in this process handed out -> that venue: a withdrawal from one sandbox
# venue to another's address arrives there as a deposit (with the withdrawal's chain tx), as between real
# venues. Weak, so a venue a test dropped is forgotten.
ADDRESS_BOOK: weakref.WeakValueDictionary[str, Venue] = weakref.WeakValueDictionary()


def _to_chain(kind: str, venue: str, asset: str, amount: Decimal, address: str, tx_id: str) -> None:
    event = {"venue": venue, "asset": asset, "amount": amount, "address": address, "tx_id": tx_id}
    for listener in CHAIN_LISTENERS:
        listener(kind, event)


@dataclass(frozen=True)
class SymbolSpec:
    """A market's static rules (what `exchangeInfo` / `AssetPairs` publish)."""

    symbol: str  # ours: "BTC-GBP"
    base: str
    quote: str
    price_step: Decimal
    amount_step: Decimal
    min_amount: Decimal
    min_notional: Decimal
    mid: Decimal  # opening mid price
    top_size: Decimal  # base amount at the best level of a synthetic book


# Realistic GBP mids (late 2024/2025 levels). Each venue shifts these by its own offset.
DEFAULT_SPECS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTC-GBP", "BTC", "GBP", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"),
               Decimal("5"), Decimal("68000"), Decimal("0.5")),
    SymbolSpec("ETH-GBP", "ETH", "GBP", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
               Decimal("5"), Decimal("2600"), Decimal("8")),
    SymbolSpec("BNB-GBP", "BNB", "GBP", Decimal("0.1"), Decimal("0.001"), Decimal("0.001"),
               Decimal("5"), Decimal("480"), Decimal("40")),
)  # fmt: skip


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"  # IOC/FOK remainder, or a market order the book could not fill
    REJECTED = "REJECTED"


OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


class VenueReject(Exception):
    """A business refusal; the front end renders it in the venue's own error format.

    `kind` is venue-neutral: insufficient_balance, unknown_order, duplicate_order, invalid_symbol,
    invalid_order, filter_failure, unknown_asset, unknown_address.
    """

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message or kind


@dataclass
class Fill:
    trade_id: int
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    time_ms: int


@dataclass
class Order:
    id: str  # the venue's order id (Binance: a number as text; Kraken: "OXXXXX-XXXXX-XXXXXX")
    seq: int
    client_order_id: str | None
    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["market", "limit"]
    time_in_force: Literal["GTC", "IOC", "FOK"]
    amount: Decimal
    price: Decimal | None
    created_ms: int
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = ZERO
    quote_filled: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""
    fills: list[Fill] = field(default_factory=list)
    updated_ms: int = 0
    locked: Decimal = ZERO  # funds held for the resting part (quote for buys, base for sells)
    hidden_lookups: int = 0  # "not found" lag: lookups still to answer as unknown
    fill_cap: Decimal | None = None  # partial-fill fault: at most this much ever fills

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    @property
    def average_price(self) -> Decimal | None:
        return self.quote_filled / self.filled if self.filled else None


@dataclass
class Deposit:
    id: str
    asset: str
    amount: Decimal
    address: str
    tx_id: str
    created_ms: int
    confirmations: int
    required: int

    @property
    def credited(self) -> bool:
        return self.confirmations >= self.required


@dataclass
class Withdrawal:
    id: str
    client_id: str | None
    asset: str
    amount: Decimal
    fee: Decimal
    address: str
    tag: str | None
    created_ms: int
    status: Literal["pending", "completed", "failed"] = "pending"
    tx_id: str | None = None
    hidden_lookups: int = 0  # the `not_found_lag` fault: history reads that do not show it yet


def visible_withdrawals(withdrawals: Iterable[Withdrawal]) -> list[Withdrawal]:
    """The withdrawals a history read shows: one still under the `not_found_lag` fault is left out of
    this read (and the count of reads it stays hidden drops by one), as a lagging history replica does."""
    shown = []
    for w in withdrawals:
        if w.hidden_lookups > 0:
            w.hidden_lookups -= 1
            continue
        shown.append(w)
    return shown


class Book:
    """Price levels, best first on each side: bids descending, asks ascending."""

    def __init__(self, bids: Iterable[tuple[Decimal, Decimal]], asks: Iterable[tuple[Decimal, Decimal]]):
        self.bids = sorted(([p, a] for p, a in bids if a > 0), key=lambda lv: -lv[0])
        self.asks = sorted(([p, a] for p, a in asks if a > 0), key=lambda lv: lv[0])

    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return bid or ask
        return (bid + ask) / 2


class SymbolMarket:
    """One symbol: its mid, its book, its random walk and its candles."""

    def __init__(self, spec: SymbolSpec, mid: Decimal, rng: random.Random, *, levels: int = 20,
                 spread_bps: Decimal = Decimal(2), spacing_bps: Decimal = Decimal(3),
                 decay: Decimal = Decimal("0.8"), walk_ticks_bps: Decimal = Decimal(1)) -> None:  # fmt: skip
        self.spec = spec
        self.rng = rng
        self.levels = levels
        self.spread_bps = spread_bps
        self.spacing_bps = spacing_bps
        self.decay = decay
        self.walk_bps = walk_ticks_bps
        self.mid = self._round_price(mid)
        self.pinned = False
        self.candles: dict[int, list[Decimal]] = {}  # minute start (ms) -> [open, high, low, close, volume]
        self.last_trade: Decimal = self.mid
        self.book = self._synthetic_book()
        self._record(self.mid, ZERO)

    def _round_price(self, price: Decimal) -> Decimal:
        return price.quantize(self.spec.price_step, rounding=ROUND_FLOOR)

    def _round_amount(self, amount: Decimal) -> Decimal:
        return amount.quantize(self.spec.amount_step, rounding=ROUND_FLOOR)

    def _synthetic_book(self) -> Book:
        half = self.spread_bps / 2
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        size = self.spec.top_size
        for i in range(self.levels):
            amount = self._round_amount(size)
            if amount <= 0:
                break
            offset = (half + self.spacing_bps * i) * BPS
            bid = (self.mid * (ONE - offset)).quantize(self.spec.price_step, rounding=ROUND_FLOOR)
            ask = (self.mid * (ONE + offset)).quantize(self.spec.price_step, rounding=ROUND_CEILING)
            bids.append((bid, amount))
            asks.append((ask, amount))
            size *= self.decay  # depth thins away from the mid
        return Book(bids, asks)

    def step(self, now_ms: int) -> None:
        """One random-walk step: move the mid by up to two steps of `walk_bps` and rebuild the book."""
        if self.pinned:
            return
        ticks = self.rng.randint(-2, 2)
        self.mid = self._round_price(self.mid * (ONE + ticks * self.walk_bps * BPS))
        self.book = self._synthetic_book()
        self._record(self.mid, ZERO, now_ms)

    def set_mid(self, mid: Decimal, now_ms: int) -> None:
        """Move the price. A pinned book is shifted level by level; a synthetic one is rebuilt."""
        mid = self._round_price(mid)
        if self.pinned:
            old = self.book.mid() or self.mid
            delta = mid - old
            self.book = Book(
                [(p + delta, a) for p, a in self.book.bids], [(p + delta, a) for p, a in self.book.asks]
            )
        self.mid = mid
        if not self.pinned:
            self.book = self._synthetic_book()
        self._record(mid, ZERO, now_ms)

    def set_book(self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]],
                 now_ms: int) -> None:  # fmt: skip
        self.book = Book(bids, asks)
        self.pinned = True
        self.mid = self.book.mid() or self.mid
        self._record(self.mid, ZERO, now_ms)

    def unpin(self) -> None:
        self.pinned = False
        self.book = self._synthetic_book()

    def _record(self, price: Decimal, volume: Decimal, now_ms: int | None = None) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        minute = now_ms - now_ms % 60_000
        c = self.candles.get(minute)
        if c is None:
            self.candles[minute] = [price, price, price, price, volume]
            if len(self.candles) > 1500:
                del self.candles[min(self.candles)]
        else:
            c[1] = max(c[1], price)
            c[2] = min(c[2], price)
            c[3] = price
            c[4] += volume

    def record_trade(self, price: Decimal, amount: Decimal, now_ms: int) -> None:
        self.last_trade = price
        self._record(price, amount, now_ms)

    def ohlcv(self, limit: int = 500) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        keys = sorted(self.candles)[-limit:]
        return [(k, *self.candles[k]) for k in keys]  # type: ignore[misc]


@dataclass
class VenueConfig:
    name: str
    taker_fee: Decimal
    maker_fee: Decimal
    price_offset_bps: Decimal = ZERO  # this venue's mids relative to DEFAULT_SPECS
    fee_in: Literal["received", "quote"] = "quote"
    step_seconds: float = 1.0  # random-walk interval
    deposit_confirmations: int = 2  # required before a deposit is credited
    confirmation_seconds: float = 5.0  # one more confirmation every this many seconds
    withdrawal_fees: dict[str, Decimal] = field(
        default_factory=lambda: {
            "BTC": Decimal("0.0001"),
            "ETH": Decimal("0.001"),
            "BNB": Decimal("0.001"),
            "GBP": Decimal(0),
        }  # fmt: skip
    )
    starting_balances: dict[str, Decimal] = field(
        default_factory=lambda: {
            "GBP": Decimal("5000000"),
            "BTC": Decimal("50"),
            "ETH": Decimal("1000"),
            "BNB": Decimal("5000"),
        }  # fmt: skip
    )
    order_id_style: Literal["numeric", "kraken"] = "numeric"
    # Histories (withdrawals) are served in pages of at most this many rows, newest first, as Binance does
    # (its maximum is 1000); tests lower it to prove a caller reads every page.
    history_page_size: int = 1000
    # Assets the venue holds in custody (deposit addresses, deposit history) but the broker does not list,
    # as every real venue has hundreds: a customer can send one to their address by mistake.
    custody_only_assets: frozenset[str] = frozenset({"USDT", "SOL"})


class Venue:
    """One exchange's state: markets, the omnibus account, orders, deposits, withdrawals."""

    def __init__(self, config: VenueConfig, seed: int = 0, specs: Iterable[SymbolSpec] = DEFAULT_SPECS,
                 walk: bool = True) -> None:  # fmt: skip
        self.config = config
        self.seed = seed
        self.specs = {s.symbol: s for s in specs}
        self.walk = walk
        self.lock = asyncio.Lock()
        self.reset()

    # ---------------------------------------------------------------- state

    def reset(self) -> None:
        """Back to the opening state (same seed, so the same walk)."""
        self.rng = random.Random(f"{self.config.name}:{self.seed}")
        self.taker_fee = self.config.taker_fee
        self.maker_fee = self.config.maker_fee
        self.markets: dict[str, SymbolMarket] = {}
        for spec in self.specs.values():
            mid = spec.mid * (ONE + self.config.price_offset_bps * BPS)
            self.markets[spec.symbol] = SymbolMarket(spec, mid, self.rng)
        self.free: dict[str, Decimal] = dict(self.config.starting_balances)
        self.used: dict[str, Decimal] = dict.fromkeys(self.free, ZERO)
        self.orders: dict[str, Order] = {}
        self.deposits: dict[str, Deposit] = {}
        self.withdrawals: dict[str, Withdrawal] = {}
        self.addresses: dict[str, str] = {}  # asset -> the account's default deposit address
        self.minted: dict[str, str] = {}  # every address the venue has handed out -> its asset
        self._seq = itertools.count(1)
        self._trade_seq = itertools.count(1)
        # A real venue never reuses an order id, not even after its own restart; neither do we.
        self._id_base = time.time_ns() // 1000
        self._last_step = time.monotonic()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def tick(self) -> None:
        """Advance the random walk by the steps due since the last call, then match resting orders."""
        if self.walk:
            now = time.monotonic()
            steps = int((now - self._last_step) / self.config.step_seconds)
            if steps > 0:
                self._last_step += steps * self.config.step_seconds
                ms = self.now_ms()
                for _ in range(min(steps, 60)):
                    for m in self.markets.values():
                        m.step(ms)
        self._age_deposits()
        for symbol in self.markets:
            self._match_resting(symbol)

    def market(self, symbol: str) -> SymbolMarket:
        try:
            return self.markets[symbol]
        except KeyError:
            raise VenueReject("invalid_symbol", f"unknown symbol {symbol}") from None

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        return self.free.get(asset, ZERO), self.used.get(asset, ZERO)

    def set_balance(self, asset: str, free: Decimal) -> None:
        self.free[asset] = free
        self.used.setdefault(asset, ZERO)

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount
        self.used.setdefault(asset, ZERO)

    def _debit(self, asset: str, amount: Decimal) -> None:
        if self.free.get(asset, ZERO) < amount:
            raise VenueReject(
                "insufficient_balance", "Account has insufficient balance for requested action."
            )
        self.free[asset] -= amount

    # ---------------------------------------------------------------- orders

    def _new_order_id(self, seq: int) -> str:
        if self.config.order_id_style == "numeric":
            return str(self._id_base + seq)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        raw = "".join(secrets.choice(alphabet) for _ in range(16))
        return f"O{raw[:5]}-{raw[5:10]}-{raw[10:16]}"

    def place(self, *, symbol: str, side: str, type: str, amount: Decimal, price: Decimal | None,
              time_in_force: str = "GTC", client_order_id: str | None = None,
              fill_ratio: Decimal | None = None, hidden_lookups: int = 0,
              force_insufficient: bool = False) -> Order:  # fmt: skip
        """Validate, match against the book, rest any GTC remainder. Raises `VenueReject`."""
        m = self.market(symbol)
        spec = m.spec
        if side not in ("buy", "sell") or type not in ("market", "limit"):
            raise VenueReject("invalid_order", "invalid side or type")
        if time_in_force not in ("GTC", "IOC", "FOK"):
            raise VenueReject("invalid_order", "invalid time in force")
        if client_order_id and any(
            o.client_order_id == client_order_id and o.is_open for o in self.orders.values()
        ):
            raise VenueReject("duplicate_order", "Duplicate order sent.")
        if amount <= 0 or amount % spec.amount_step != 0 or amount < spec.min_amount:
            raise VenueReject("filter_failure", "Filter failure: LOT_SIZE")
        if type == "limit":
            if price is None or price <= 0 or price % spec.price_step != 0:
                raise VenueReject("filter_failure", "Filter failure: PRICE_FILTER")
        else:
            price = None
            time_in_force = "IOC" if time_in_force == "GTC" else time_in_force
        reference = price if price is not None else (m.book.mid() or m.mid)
        if amount * reference < spec.min_notional:
            raise VenueReject("filter_failure", "Filter failure: NOTIONAL")
        if force_insufficient:
            raise VenueReject(
                "insufficient_balance", "Account has insufficient balance for requested action."
            )
        seq = next(self._seq)
        now = self.now_ms()
        order = Order(
            id=self._new_order_id(seq), seq=seq, client_order_id=client_order_id, symbol=symbol,
            side=side,  # type: ignore[arg-type]
            type=type,  # type: ignore[arg-type]
            time_in_force=time_in_force,  # type: ignore[arg-type]
            amount=amount, price=price, created_ms=now, updated_ms=now,
            fee_asset=self._fee_asset(spec, side), hidden_lookups=hidden_lookups,
        )  # fmt: skip
        if fill_ratio is not None:
            order.fill_cap = m._round_amount(amount * fill_ratio)
        self._check_can_afford(order, m)
        self._take(order, m, fok=time_in_force == "FOK")
        if order.remaining > 0:
            if type == "limit" and time_in_force == "GTC":
                self._lock_for_rest(order)
                order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.NEW
            else:
                order.status = OrderStatus.EXPIRED
        else:
            order.status = OrderStatus.FILLED
        self.orders[order.id] = order
        return order

    def _fee_asset(self, spec: SymbolSpec, side: str) -> str:
        if self.config.fee_in == "quote":
            return spec.quote
        return spec.base if side == "buy" else spec.quote

    def _check_can_afford(self, order: Order, m: SymbolMarket) -> None:
        """Refuse up front what the account obviously cannot pay, as venues do."""
        spec = m.spec
        if order.side == "sell":
            if self.free.get(spec.base, ZERO) < order.amount:
                raise VenueReject(
                    "insufficient_balance", "Account has insufficient balance for requested action."
                )
            return
        cost = self._priced_cost(order, m)
        fee = cost * self.taker_fee if self.config.fee_in == "quote" else ZERO
        if self.free.get(spec.quote, ZERO) < cost + fee:
            raise VenueReject(
                "insufficient_balance", "Account has insufficient balance for requested action."
            )

    def _priced_cost(self, order: Order, m: SymbolMarket) -> Decimal:
        """Upper bound of the quote a buy can spend: the limit price, or the book walk for a market order."""
        if order.price is not None:
            return order.amount * order.price
        left, cost = order.amount, ZERO
        for p, a in m.book.asks:
            take = min(left, a)
            cost += take * p
            left -= take
            if left <= 0:
                break
        return cost

    def _crosses(self, order: Order, level_price: Decimal) -> bool:
        if order.price is None:
            return True
        return level_price <= order.price if order.side == "buy" else level_price >= order.price

    def _take(self, order: Order, m: SymbolMarket, fok: bool) -> None:
        levels = m.book.asks if order.side == "buy" else m.book.bids
        want = (
            order.remaining if order.fill_cap is None else min(order.remaining, order.fill_cap - order.filled)
        )
        if fok:
            available = sum((a for p, a in levels if self._crosses(order, p)), ZERO)
            if available < order.remaining or want < order.remaining:
                return
        while want > 0 and levels and self._crosses(order, levels[0][0]):
            price, avail = levels[0]
            qty = min(want, avail)
            self._fill(order, m, price, qty, maker=False)
            want -= qty
            levels[0][1] -= qty
            if levels[0][1] <= 0:
                levels.pop(0)

    def _fill(self, order: Order, m: SymbolMarket, price: Decimal, qty: Decimal, maker: bool) -> None:
        spec = m.spec
        cost = price * qty
        rate = self.maker_fee if maker else self.taker_fee
        now = self.now_ms()
        if order.side == "buy":
            fee_base = qty if order.fee_asset == spec.base else cost
            fee = (fee_base * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING)
            if order.locked:  # a resting buy pays from its hold
                release = min(order.locked, cost + (fee if order.fee_asset == spec.quote else ZERO))
                order.locked -= release
                self.used[spec.quote] -= release
                self.free[spec.quote] += release
            self._debit(spec.quote, cost + (fee if order.fee_asset == spec.quote else ZERO))
            self._credit(spec.base, qty - (fee if order.fee_asset == spec.base else ZERO))
        else:
            fee = (cost * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING)
            if order.locked:
                release = min(order.locked, qty)
                order.locked -= release
                self.used[spec.base] -= release
                self.free[spec.base] += release
            self._debit(spec.base, qty)
            self._credit(spec.quote, cost - fee)
        order.filled += qty
        order.quote_filled += cost
        order.fee += fee
        order.updated_ms = now
        order.fills.append(Fill(next(self._trade_seq), price, qty, fee, order.fee_asset, maker, now))
        m.record_trade(price, qty, now)

    def _lock_for_rest(self, order: Order) -> None:
        spec = self.specs[order.symbol]
        if order.side == "buy":
            assert order.price is not None
            amount = order.remaining * order.price
            if order.fee_asset == spec.quote:
                amount += (amount * self.maker_fee).quantize(FEE_QUANTUM, rounding=ROUND_CEILING)
            asset = spec.quote
        else:
            amount, asset = order.remaining, spec.base
        self._debit(asset, amount)
        self.used[asset] = self.used.get(asset, ZERO) + amount
        order.locked = amount

    def _release(self, order: Order) -> None:
        spec = self.specs[order.symbol]
        asset = spec.quote if order.side == "buy" else spec.base
        if order.locked:
            self.used[asset] -= order.locked
            self.free[asset] += order.locked
            order.locked = ZERO

    def _match_resting(self, symbol: str) -> None:
        m = self.markets[symbol]
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            if order.symbol != symbol or not order.is_open or order.price is None:
                continue
            levels = m.book.asks if order.side == "buy" else m.book.bids
            cap = (
                order.remaining
                if order.fill_cap is None
                else min(order.remaining, order.fill_cap - order.filled)
            )
            while cap > 0 and levels and self._crosses(order, levels[0][0]):
                qty = min(cap, levels[0][1])
                # A resting order is the maker: it trades at its own limit price.
                self._fill(order, m, order.price, qty, maker=True)
                cap -= qty
                levels[0][1] -= qty
                if levels[0][1] <= 0:
                    levels.pop(0)
            if order.remaining <= 0:
                order.status = OrderStatus.FILLED
                self._release(order)
            elif order.filled:
                order.status = OrderStatus.PARTIALLY_FILLED

    def lookup(self, *, order_id: str | None = None, client_order_id: str | None = None,
               symbol: str | None = None) -> Order:  # fmt: skip
        """Find an order; honours the not-found lag of freshly created orders."""
        found: Order | None = None
        if order_id is not None:
            found = self.orders.get(order_id)
        elif client_order_id is not None:
            matches = [o for o in self.orders.values() if o.client_order_id == client_order_id]
            found = max(matches, key=lambda o: o.seq) if matches else None
        if found is None or (symbol is not None and found.symbol != symbol):
            raise VenueReject("unknown_order", "Order does not exist.")
        if found.hidden_lookups > 0:
            found.hidden_lookups -= 1
            raise VenueReject("unknown_order", "Order does not exist.")
        return found

    def listed(self, match: Callable[[Order], bool]) -> list[Order]:
        """Orders a listing query (open orders, closed orders, trades) returns.

        A freshly created order under the not-found lag is left out, and each listing that would have
        shown it counts as one of its lookups, as `lookup` does.
        """
        out = []
        for o in sorted(self.orders.values(), key=lambda o: o.seq):
            if not match(o):
                continue
            if o.hidden_lookups > 0:
                o.hidden_lookups -= 1
                continue
            out.append(o)
        return out

    def cancel(self, *, order_id: str | None = None, client_order_id: str | None = None,
               symbol: str | None = None) -> Order:  # fmt: skip
        order = self.lookup(order_id=order_id, client_order_id=client_order_id, symbol=symbol)
        if not order.is_open:
            raise VenueReject("unknown_order", "Unknown order sent.")
        self._release(order)
        order.status = OrderStatus.CANCELED
        order.updated_ms = self.now_ms()
        return order

    # ---------------------------------------------------------------- custody

    def deposit_address(self, asset: str, new: bool = False) -> str:
        """The account's deposit address for `asset`; `new` mints a fresh one (as Kraken's `new=true`).

        Every address belongs to the omnibus: a deposit to any of them credits the same balance."""
        listed = asset in self.free or asset in {s.base for s in self.specs.values()}
        if not listed and asset not in self.config.custody_only_assets:
            raise VenueReject("unknown_asset", f"unknown asset {asset}")
        if new or asset not in self.addresses:
            # BNB is deposited on BNB Smart Chain (BEP20): an EVM address like ETH's.
            prefix = {"BTC": "bc1q", "ETH": "0x", "BNB": "0x"}.get(asset, "addr")
            address = prefix + secrets.token_hex(20 if asset in ("ETH", "BNB") else 16)
            self.minted[address] = asset
            ADDRESS_BOOK[address] = self
            if asset not in self.addresses:
                self.addresses[asset] = address
            return address
        return self.addresses[asset]

    def credit_deposit(self, asset: str, amount: Decimal, confirmations: int = 0,
                       tx_id: str | None = None, address: str | None = None) -> Deposit:  # fmt: skip
        """An incoming transfer to one of our addresses (default: the account's first); credited to the
        omnibus once it has enough confirmations."""
        if address is not None and self.minted.get(address) != asset:
            raise VenueReject("unknown_address", f"{address} is not one of our {asset} deposit addresses")
        address = address or self.deposit_address(asset)
        dep = Deposit(
            id=str(next(self._seq)), asset=asset, amount=amount, address=address,
            tx_id=tx_id or secrets.token_hex(32), created_ms=self.now_ms(), confirmations=confirmations,
            required=self.config.deposit_confirmations,
        )  # fmt: skip
        self.deposits[dep.id] = dep
        _to_chain("deposit", self.config.name, asset, amount, address, dep.tx_id)
        if dep.credited:
            self._credit(asset, amount)
        return dep

    def confirm_deposit(self, deposit_id: str, confirmations: int | None = None) -> Deposit:
        dep = self.deposits[deposit_id]
        self._set_confirmations(dep, confirmations if confirmations is not None else dep.required)
        return dep

    def _set_confirmations(self, dep: Deposit, confirmations: int) -> None:
        was = dep.credited
        dep.confirmations = max(dep.confirmations, confirmations)
        if dep.credited and not was:
            self._credit(dep.asset, dep.amount)

    def _age_deposits(self) -> None:
        now = self.now_ms()
        per = self.config.confirmation_seconds * 1000
        for dep in self.deposits.values():
            if not dep.credited and per > 0:
                self._set_confirmations(dep, int((now - dep.created_ms) / per))

    def withdraw(self, *, asset: str, amount: Decimal, address: str, tag: str | None = None,
                 client_id: str | None = None, force_insufficient: bool = False, fail: bool = False,
                 hidden_lookups: int = 0) -> Withdrawal:  # fmt: skip
        """Debit amount + the network fee now; the transfer completes at once (the chain is not modelled).

        `fail` (the `withdrawal_fail` fault): accepted, then it fails on the venue's side and amount + fee
        come back, as a withdrawal the venue's risk desk or the chain rejected does.
        """
        if client_id is not None:
            for w in self.withdrawals.values():
                if w.client_id == client_id:
                    return w  # idempotent by the caller's id, as Binance's withdrawOrderId
        if amount <= 0:
            raise VenueReject("invalid_order", "amount must be positive")
        if not address:
            raise VenueReject("invalid_order", "address required")
        fee = self.config.withdrawal_fees.get(asset, ZERO)
        if force_insufficient or self.free.get(asset, ZERO) < amount + fee:
            raise VenueReject(
                "insufficient_balance", "Account has insufficient balance for requested action."
            )
        self._debit(asset, amount + fee)
        wid = secrets.token_hex(16)
        w = Withdrawal(
            id=wid, client_id=client_id, asset=asset, amount=amount, fee=fee, address=address, tag=tag,
            created_ms=self.now_ms(), status="completed", tx_id=secrets.token_hex(32),
            hidden_lookups=hidden_lookups,
        )  # fmt: skip
        if fail:
            self.free[asset] = self.free.get(asset, ZERO) + amount + fee
            w.status, w.tx_id = "failed", None
        self.withdrawals[wid] = w
        _to_chain("withdrawal", self.config.name, asset, amount, address, w.tx_id or "")
        receiver = ADDRESS_BOOK.get(address)
        arrives = receiver is not None and receiver is not self and receiver.minted.get(address) == asset
        if w.tx_id and receiver is not None and arrives:
            # Another venue of this process owns the address: the transfer arrives there.
            receiver.credit_deposit(asset, amount, tx_id=w.tx_id, address=address)
        return w

    # ---------------------------------------------------------------- control

    def snapshot_orders(self) -> list[dict[str, Any]]:
        """Every order, including ones still hidden by the not-found lag (for test assertions)."""
        return [
            {
                "id": o.id, "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side,
                "type": o.type, "time_in_force": o.time_in_force, "amount": str(o.amount),
                "price": None if o.price is None else str(o.price), "status": o.status.value,
                "filled": str(o.filled), "quote_filled": str(o.quote_filled), "fee": str(o.fee),
                "fee_asset": o.fee_asset,
            }
            for o in sorted(self.orders.values(), key=lambda o: o.seq)
        ]  # fmt: skip

    def book_levels(self, symbol: str, depth: int) -> tuple[list[list[Decimal]], list[list[Decimal]]]:
        book = self.market(symbol).book
        return [list(lv) for lv in book.bids[:depth]], [list(lv) for lv in book.asks[:depth]]


def d(value: Any) -> Decimal:
    """Parse an amount from JSON/form text; refuse floats so they cannot sneak in."""
    if isinstance(value, float):
        raise ValueError("amounts must be strings, not floats")
    try:
        out = Decimal(str(value))
    except decimal.InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return out


def fmt(value: Decimal, places: int = 8) -> str:
    """Fixed-point text with `places` decimals, as the venues print numbers."""
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR):f}"
