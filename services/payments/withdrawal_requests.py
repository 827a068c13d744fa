"""Accepting a withdrawal request: the request-time rules (limits, destination, balance) and the row,
recorded in one transaction with the start of its saga; the per-withdrawal lock its hold waits on."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import CRYPTO, FIAT, SCALES, Direction, PrecisionError, check_scale, round_for_house
from models.payments import Destination
from models.payments_api import WithdrawalOut
from models.screening import Action
from services import holds
from services.alerts import audit
from services.aml import travel_rule as travel
from services.limits import (
    COUNTED_WITHDRAWAL_STATUSES,
    WITHDRAWAL_LIMITS_GBP,
    LimitExceeded,
    check_limit,
    lock_customer,
    rolling_24h_sum,
)
from services.payments import withdrawal_notices
from services.payments.ids import ZERO
from services.payments.queries import find_withdrawal, own_withdrawal
from services.payments.refusals import PaymentRefused
from services.screening import crypto as wallet_screening
from services.screening.service import ScreeningConfig


class WithdrawalRefused(PaymentRefused):
    """The request breaks a rule checked at request time; nothing was recorded. `code` is stable and
    `reason` is for the customer: show it, fix the request (or wait, for a 503) and send it again."""

    default_code = "withdrawal_refused"
    status = 422


class TravelRuleRequired(WithdrawalRefused):
    """A crypto withdrawal of £1,000 or more without the beneficiary's details (UK Travel Rule): send
    `travel_rule` with the beneficiary's name and where the wallet is."""

    def __init__(self) -> None:
        super().__init__(
            "travel_rule_required",
            f"a crypto withdrawal worth £{travel.THRESHOLD_GBP:,} or more needs travel_rule: the "
            "beneficiary's name and whether the wallet is self-hosted or at a provider (which one)",
        )
        self.field = "body.travel_rule"


@dataclass(frozen=True, slots=True)
class WithdrawalPolicy:
    """The configurable numbers of a withdrawal, from settings."""

    approval_threshold_gbp: Decimal
    dual_approval_threshold_gbp: Decimal
    fees: dict[str, Decimal]

    def fee(self, currency: str) -> Decimal:
        return self.fees.get(currency, ZERO)

    def approvals_required(self, notional_gbp: Decimal, flagged: bool) -> int:
        """0 below the threshold (unless flagged), 1 from it, 2 (distinct) above the dual threshold."""
        if notional_gbp > self.dual_approval_threshold_gbp:
            return 2
        if notional_gbp >= self.approval_threshold_gbp or flagged:
            return 1
        return 0


@dataclass(frozen=True, slots=True)
class AcceptedWithdrawal:
    withdrawal_id: uuid.UUID
    fee: Decimal
    notional_gbp: Decimal
    approvals_required: int
    destination: Destination
    provider: str


async def accept_withdrawal(
    engine: AsyncEngine,
    *,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    price_gbp: Decimal | None,
    address_id: uuid.UUID | None,
    bank_account_id: uuid.UUID | None,
    policy: WithdrawalPolicy,
    crypto_provider: str,
    flagged: bool = False,
    now: datetime | None = None,
    on_recorded: Callable[[AcceptedWithdrawal], Awaitable[None]] | None = None,
    travel_rule: travel.TravelRuleInfo | None = None,
    screening: ScreeningConfig | None = None,
) -> AcceptedWithdrawal:
    """Check the request-time rules and record the withdrawal (status PENDING), atomically.

    The customer's row is locked first, so two concurrent requests are counted against the rolling
    24 h limit one after the other. Crypto is valued at `price_gbp` (the caller's price source) and the
    GBP value rounds up: the limit never rounds in the customer's favour. The approval thresholds apply
    to the customer's rolling 24 h total including this request (three £9,999.99 withdrawals in a minute
    are £29,999.97, not three small ones). A halted currency is NOT refused here: the saga holds the funds
    and waits until ops lift the halt (the customer can cancel).

    `on_recorded` (the API starts the saga there) runs inside the transaction, after the row is written:
    if it raises, nothing is recorded, so a request refused or not started leaves no withdrawal behind.
    The row's advisory lock makes the saga's reserve step wait for this commit (`lock_withdrawal_for_hold`).

    Crypto from £1,000 needs `travel_rule` (the beneficiary, screened with `screening`; see
    services/aml/travel_rule.py): a possible sanctions match flags the withdrawal for an approver, a strong
    one refuses it in neutral words.
    """
    now = now or datetime.now(UTC)
    try:
        check_scale(currency, amount)
    except PrecisionError as e:  # finer than the currency's scale: never rounded for the customer
        raise WithdrawalRefused("invalid_amount", str(e)) from e
    if amount <= 0:
        raise WithdrawalRefused("invalid_amount", "the amount must be positive")
    if currency in FIAT:
        notional = amount
    elif currency in CRYPTO:
        if price_gbp is None or price_gbp <= 0:
            raise WithdrawalRefused("price_unavailable", f"no GBP price for {currency} right now", 503)
        notional = round_for_house("GBP", amount * price_gbp, Direction.CUSTOMER_PAYS)
    else:
        raise WithdrawalRefused("unknown_currency", f"{currency} cannot be withdrawn")
    fee = policy.fee(currency)
    if travel_rule is None and travel.required(currency, notional):
        raise TravelRuleRequired()
    if travel_rule is not None and screening is None:
        raise ValueError("travel rule details are screened: pass the screening config")
    findings: travel.TravelRuleFindings | None = None
    async with engine.begin() as conn:
        customer = await lock_customer(conn, user_id)
        if customer is None:
            raise WithdrawalRefused("unknown_user", "no such customer", 404)
        tier, status = customer
        if status != "ACTIVE":
            raise WithdrawalRefused("account_not_active", f"the account is {status.lower()}", 403)
        if currency in FIAT:
            dest = await _bank_destination(conn, user_id, bank_account_id, now)
            provider = "bank"
        else:
            dest = await _crypto_destination(conn, user_id, currency, address_id, now)
            provider = crypto_provider
            if await wallet_screening.refuse_listed_destination(
                engine,
                user_id=user_id,
                withdrawal_id=withdrawal_id,
                currency=currency,
                address=dest.address or "",
            ):  # a listed wallet: refused in neutral words (no tipping off); compliance has the finding
                raise WithdrawalRefused(wallet_screening.REFUSAL_CODE, wallet_screening.REFUSAL_TEXT, 422)
        if travel_rule is not None and screening is not None:
            findings = await travel.assess(
                engine, conn, screening, info=travel_rule, user_id=user_id, withdrawal_id=withdrawal_id
            )
            if findings.screening is Action.FREEZE_PENDING_REVIEW:  # neutral words; compliance has it
                raise WithdrawalRefused(wallet_screening.REFUSAL_CODE, wallet_screening.REFUSAL_TEXT, 422)
            flagged = flagged or findings.flag_for_approval
        used = await rolling_24h_sum(
            conn,
            table="withdrawals",
            amount_column="notional_gbp",
            user_id=user_id,
            statuses=COUNTED_WITHDRAWAL_STATUSES,
            exclude_id=withdrawal_id,
            now=now,
        )
        try:
            check_limit("withdrawal", tier, WITHDRAWAL_LIMITS_GBP, used, notional)
        except LimitExceeded as e:
            raise WithdrawalRefused("withdrawal_limit_exceeded", e.reason) from e
        available = await _available(conn, user_id, currency)
        if available < amount + fee:
            raise WithdrawalRefused(
                "insufficient_funds", f"available {currency} balance does not cover {amount + fee}"
            )
        approvals = policy.approvals_required(used + notional, flagged)
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": withdrawal_lock_key(withdrawal_id)}
        )
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, fee, destination_address, status, "
                "provider, destination_type, address_id, bank_account_id, notional_gbp, approvals_required, "
                "flagged, travel_rule_beneficiary, travel_rule_wallet, travel_rule_provider, "
                "travel_rule_own_wallet) VALUES (:id, :u, :c, :a, :f, :dest, 'PENDING', :p, :dt, :aid, :bid, "
                ":n, :ar, :fl, :travel_rule_beneficiary, :travel_rule_wallet, :travel_rule_provider, "
                ":travel_rule_own_wallet) ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": withdrawal_id,
                "u": user_id,
                "c": currency,
                "a": amount,
                "f": fee,
                "dest": dest.address
                if dest.kind == "crypto"
                else f"{dest.sort_code} {dest.account_number} {dest.holder_name}",
                "p": provider,
                "dt": dest.kind,
                "aid": dest.address_id,
                "bid": dest.bank_account_id,
                "n": notional,
                "ar": approvals,
                "fl": flagged,
                **(findings.columns() if findings else dict.fromkeys(_TRAVEL_RULE_COLUMNS)),
            },
        )
        if findings is not None and findings.unowned_self_hosted:
            await travel.flag_unowned_self_hosted(conn, user_id=user_id, withdrawal_id=withdrawal_id, now=now)
        await audit(
            conn,
            "withdrawal.requested",
            actor_id=user_id,
            actor_type="user",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            amount=str(amount),
            currency=currency,
            notional_gbp=str(notional),
            rolling_24h_gbp=str(used + notional),
            approvals_required=approvals,
        )
        if notional > policy.dual_approval_threshold_gbp:
            await withdrawal_notices.large_withdrawal(
                conn, withdrawal_id, user_id, currency, amount, notional
            )
        accepted = AcceptedWithdrawal(
            withdrawal_id=withdrawal_id,
            fee=fee,
            notional_gbp=notional,
            approvals_required=approvals,
            destination=dest,
            provider=provider,
        )
        if on_recorded is not None:
            await on_recorded(accepted)
    return accepted


async def _available(conn: AsyncConnection, user_id: uuid.UUID, currency: str) -> Decimal:
    """The customer's available balance (a pre-check; the saga's hold is the atomic one)."""
    row = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(balance - reserved_balance), 0) FROM accounts "
                "WHERE kind = 'customer' AND user_id = :u AND currency = :c"
            ),
            {"u": user_id, "c": currency},
        )
    ).first()
    return Decimal(row[0]) if row else ZERO


_TRAVEL_RULE_COLUMNS = (
    "travel_rule_beneficiary",
    "travel_rule_wallet",
    "travel_rule_provider",
    "travel_rule_own_wallet",
)


def withdrawal_lock_key(withdrawal_id: uuid.UUID) -> int:
    """The advisory-lock key of one withdrawal (a signed 64-bit number derived from its id)."""
    return int.from_bytes(withdrawal_id.bytes[:8], "big", signed=True)


async def lock_withdrawal_for_hold(conn: AsyncConnection, withdrawal_id: uuid.UUID) -> None:
    """Wait for the request's own transaction (advisory lock), then lock the row and check it is live
    (`holds.lock_live_withdrawal`, the one rule for every hold's owner; `holds.OwnerFinished` if not).

    Run in the transaction that creates the hold, so a stalled worker replaying an old task can't hold
    funds for a withdrawal that has meanwhile finished, and a saga whose request never committed (the API
    crashed) holds nothing."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": withdrawal_lock_key(withdrawal_id)})
    await holds.lock_live_withdrawal(conn, withdrawal_id)


async def discard_withdrawal(conn: AsyncConnection, withdrawal_id: uuid.UUID, *, reason: str) -> None:
    """Remove a request refused before anything was held (no hold, still PENDING), audited; the customer's
    list shows only withdrawals that happened."""
    deleted = (
        await conn.execute(
            text(
                "DELETE FROM withdrawals WHERE id = :id AND status = 'PENDING' AND hold_id IS NULL "
                "RETURNING user_id"
            ),
            {"id": withdrawal_id},
        )
    ).first()
    if deleted is not None:
        await audit(
            conn,
            "withdrawal.refused",
            actor_id=None,
            actor_type="system",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            reason=reason,
        )


async def _bank_destination(
    conn: AsyncConnection, user_id: uuid.UUID, bank_account_id: uuid.UUID | None, now: datetime
) -> Destination:
    """The named account, if it can receive GBP: one the customer paid in from, whose holder name was
    checked, that they confirmed with TOTP, past its cooling-off period. There is no default account:
    guessing the destination is how a stranger's payment could redirect a withdrawal."""
    if bank_account_id is None:
        raise WithdrawalRefused("bank_account_required", "name the bank account to pay (bank_account_id)")
    row = (
        await conn.execute(
            text(
                "SELECT id, sort_code, account_number, holder_name, status, usable_from FROM bank_accounts "
                "WHERE user_id = :u AND id = :b AND verified"
            ),
            {"u": user_id, "b": bank_account_id},
        )
    ).first()
    if row is None:
        raise WithdrawalRefused(
            "no_verified_bank_account",
            "GBP can only be withdrawn to a bank account you have paid in from; make a deposit first",
        )
    if row[4] == "HELD_FOR_REVIEW":
        raise WithdrawalRefused(
            "bank_account_held_for_review",
            "the account holder's name does not match yours; it is under review",
        )
    if row[4] != "CONFIRMED":
        raise WithdrawalRefused(
            "bank_account_unconfirmed", "confirm this bank account (with your authenticator code) first"
        )
    if row[5] is None or row[5] > now:
        raise WithdrawalRefused(
            "bank_account_cooling_down",
            f"a newly confirmed account can be paid from {row[5].isoformat() if row[5] else 'later'}",
        )
    return Destination(
        kind="bank", bank_account_id=row[0], sort_code=row[1], account_number=row[2], holder_name=row[3]
    )


async def _crypto_destination(
    conn: AsyncConnection, user_id: uuid.UUID, currency: str, address_id: uuid.UUID | None, now: datetime
) -> Destination:
    if address_id is None:
        raise WithdrawalRefused("address_required", "choose a whitelisted address")
    row = (
        await conn.execute(
            text(
                "SELECT id, address, tag, usable_from FROM withdrawal_addresses "
                "WHERE id = :id AND user_id = :u AND currency = :c AND removed_at IS NULL"
            ),
            {"id": address_id, "u": user_id, "c": currency},
        )
    ).first()
    if row is None:
        raise WithdrawalRefused("address_not_whitelisted", f"that is not one of your {currency} addresses")
    if row[3] > now:
        raise WithdrawalRefused(
            "address_cooling_down",
            f"a new address can be used 24 h after it was added: from {row[3].isoformat()}",
        )
    return Destination(kind="crypto", address_id=row[0], address=row[1], tag=row[2] or None)


class GbpPrices(Protocol):
    async def gbp_price(self, currency: str) -> Decimal | None:
        """A GBP value of one unit of `currency` (the side that never undervalues what leaves), or None."""
        ...


class WithdrawalSagas(Protocol):
    """The withdrawal saga as the request needs it (the API implements it over Temporal)."""

    async def start(
        self, accepted: AcceptedWithdrawal, *, user_id: uuid.UUID, currency: str, amount: Decimal
    ) -> None:
        """Start the saga for the withdrawal just recorded; raise to leave nothing recorded."""

    async def acceptance(self, withdrawal_id: uuid.UUID) -> tuple[str, str | None]:
        """The saga's status and reason once it has held the funds (or failed to)."""
        ...


async def request_withdrawal(
    engine: AsyncEngine,
    *,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    address_id: uuid.UUID | None,
    bank_account_id: uuid.UUID | None,
    policy: WithdrawalPolicy,
    crypto_provider: str,
    prices: GbpPrices,
    sagas: WithdrawalSagas,
    travel_rule: travel.TravelRuleInfo | None = None,
    screening: ScreeningConfig | None = None,
) -> WithdrawalOut:
    """Record the request and start its saga as one unit: the row commits only once the saga has started,
    and a request refused (4xx) leaves no withdrawal behind. A retry of a request that was recorded and
    started (same id, from the same Idempotency-Key) answers with that withdrawal."""
    existing = await find_withdrawal(engine, user_id=user_id, withdrawal_id=withdrawal_id)
    if existing is not None:
        return existing
    if currency not in SCALES:
        raise WithdrawalRefused("unknown_currency", f"{currency} cannot be withdrawn")
    price_gbp = await prices.gbp_price(currency) if currency in CRYPTO else None

    async def start(accepted: AcceptedWithdrawal) -> None:
        await sagas.start(accepted, user_id=user_id, currency=currency, amount=amount)

    await accept_withdrawal(
        engine, withdrawal_id=withdrawal_id, user_id=user_id, currency=currency, amount=amount,
        price_gbp=price_gbp, address_id=address_id, bank_account_id=bank_account_id, policy=policy,
        crypto_provider=crypto_provider, on_recorded=start, travel_rule=travel_rule, screening=screening,
    )  # fmt: skip
    status, reason = await sagas.acceptance(withdrawal_id)
    if status == "FAILED":  # the hold was refused (a concurrent spend): the request is discarded
        raise WithdrawalRefused("insufficient_funds", reason or "the funds could not be held")
    return await own_withdrawal(engine, user_id=user_id, withdrawal_id=withdrawal_id)


class WithdrawalCancels(Protocol):
    async def cancel(self, withdrawal_id: uuid.UUID) -> None:
        """Ask the saga to cancel and wait for it to end; raise if it cannot be cancelled."""


async def cancel_withdrawal(
    engine: AsyncEngine, *, user_id: uuid.UUID, withdrawal_id: uuid.UUID, sagas: WithdrawalCancels
) -> WithdrawalOut:
    """Cancel the customer's own withdrawal (possible until it is sent) and show how it ended."""
    await own_withdrawal(engine, user_id=user_id, withdrawal_id=withdrawal_id)
    await sagas.cancel(withdrawal_id)
    return await own_withdrawal(engine, user_id=user_id, withdrawal_id=withdrawal_id)
