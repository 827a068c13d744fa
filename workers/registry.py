"""What each task queue runs. Adding a saga means adding it here, and nowhere else in workers/.

`Dependencies` holds the clients that activity classes are constructed with; it is built once
per worker process and closed on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.holds import HoldActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.ping import PingActivities
from config import Settings
from providers.exchanges.base import ExecutionAdapter
from services.ledger import Ledger
from services.router import Router, RouterParams
from temporal import task_queues
from workflows.deposits import CryptoDepositPollWorkflow, DepositWorkflow
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.hold_audit import HoldAuditWorkflow
from workflows.orders import OrderWorkflow
from workflows.ping import PingWorkflow
from workflows.withdrawals import WithdrawalWorkflow


@dataclass
class Dependencies:
    settings: Settings
    engine: AsyncEngine
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Built on first use (tests inject their own, pointed at in-process sandboxes).
    adapters: dict[str, ExecutionAdapter] | None = None
    router: Router | None = None
    email: Any = None
    bank: Any = None

    def bank_client(self) -> Any:
        """The GBP bank rail client (providers.bank.BankClient), built on first use."""
        if self.bank is None:
            from providers.bank import BankClient

            self.bank = BankClient.from_settings(self.settings)
            self.closers.append(self.bank.close)
        return self.bank

    def exchange_adapters(self) -> dict[str, ExecutionAdapter]:
        if self.adapters is None:
            from providers.exchanges.ccxt_adapter import build_adapters

            self.adapters = build_adapters(self.settings)
            for adapter in self.adapters.values():
                self.closers.append(adapter.close)
        return self.adapters

    def best_execution_router(self) -> Router:
        if self.router is None:
            adapters = self.exchange_adapters()
            exchanges = {name: a for name, a in adapters.items() if name != "otc"}
            self.router = Router(
                exchanges, otc=adapters.get("otc"), params=RouterParams.from_settings(self.settings)
            )
        return self.router

    def email_sender(self) -> Any:
        if self.email is None and self.settings.sendgrid_host:
            from providers.email import EmailSender

            self.email = EmailSender.from_settings(self.settings)
        return self.email


@dataclass
class QueueSpec:
    workflows: Sequence[type]
    activities: Sequence[Callable[..., Any]]


def build(deps: Dependencies) -> dict[str, QueueSpec]:
    """Task queue -> the workflows and bound activity methods its workers run."""
    ping = PingActivities(deps.engine)
    orders = OrderActivities(
        engine=deps.engine,
        ledger=Ledger(deps.engine, house_shards=deps.settings.house_account_shards),
        router=deps.best_execution_router(),
        adapters=deps.exchange_adapters(),
        settings=deps.settings,
        email=deps.email_sender(),
    )
    pay = PaymentActivities(
        engine=deps.engine,
        settings=deps.settings,
        bank=deps.bank_client,
        adapters=deps.exchange_adapters,
        email=deps.email_sender(),
    )
    return {
        task_queues.ORDERS: QueueSpec(
            workflows=[PingWorkflow, OrderWorkflow],
            activities=[
                ping.ping,
                orders.accept,
                orders.quote,
                orders.reserve,
                orders.place,
                orders.settle,
                orders.mark,
                orders.venue_status,
                orders.cancel_at_venue,
                orders.resolve_placement,
                orders.verify_resolution,
                orders.notify,
            ],
        ),
        task_queues.PAYMENTS: QueueSpec(
            workflows=[DepositWorkflow, CryptoDepositPollWorkflow, WithdrawalWorkflow],
            activities=[
                pay.credit_bank_deposit,
                pay.notify_deposit,
                pay.poll_crypto_deposits,
                pay.reserve_withdrawal,
                pay.discard_withdrawal,
                pay.mark_withdrawal,
                pay.withdrawal_needs_attention,
                pay.judge_decision,
                pay.verify_proof,
                pay.currency_halted,
                pay.send_withdrawal,
                pay.settlement_status,
                pay.complete_withdrawal,
                pay.release_withdrawal,
                pay.notify_withdrawal,
            ],
        ),
        task_queues.OPS: QueueSpec(
            workflows=[FloatMonitorWorkflow, HoldAuditWorkflow],
            activities=[pay.check_float, HoldActivities(engine=deps.engine).audit],
        ),
    }
