"""What each task queue runs. Adding a saga means adding it here, and nowhere else in workers/.

`Dependencies` holds the clients that activity classes are constructed with; it is built once
per worker process and closed on shutdown. Each client is built once and shared by every activity
class: one `Ledger` (so postings from orders, payments and treasury share one group commit and one
cache of house shards), one adapter set, one router, one bank client, one mail sender.

Tests build their workers here too (`build(deps)[queue]`), with their own clients injected, and run the
spec on a task queue of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.aml import AmlActivities
from activities.aml_sar import SarActivities
from activities.first_trade import FirstTradeActivities
from activities.gdpr import GdprActivities
from activities.holds import HoldActivities
from activities.kyc import KycActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.ping import PingActivities
from activities.price_alerts import PriceAlertActivities
from activities.reconciliation import ReconciliationActivities
from activities.screening import ScreeningActivities
from activities.treasury import TreasuryActivities
from config import Settings
from providers.exchanges.base import ExecutionAdapter
from services.ledger import Ledger
from services.router import Router, RouterParams
from services.venue_alerts import VenueDownAlerts
from temporal import task_queues
from workflows.aml import AmlSweepWorkflow
from workflows.deposits import CryptoDepositPollWorkflow, DepositWorkflow
from workflows.first_trade import CoolingOffWorkflow
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.gdpr import GdprExportWorkflow, RetentionWorkflow
from workflows.hold_audit import HoldAuditWorkflow
from workflows.kyc import KYCWorkflow
from workflows.orders import OrderWorkflow
from workflows.ping import PingWorkflow
from workflows.price_alerts import PriceAlertsWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.sar import SarWorkflow
from workflows.screening import SanctionsRefreshWorkflow
from workflows.treasury import FloatTransferWorkflow
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
    kyc_vendor: Any = None
    adapters_from_settings: bool = False  # injected adapters (tests) keep reading books directly
    ledger: Ledger | None = None
    send_email: bool = True  # False: activities send no email (tests that read no mail)

    def shared_ledger(self) -> Ledger:
        """The process's one `Ledger`, built on first use (no I/O until its first call)."""
        if self.ledger is None:
            self.ledger = Ledger(self.engine, house_shards=self.settings.house_account_shards)
        return self.ledger

    def bank_client(self) -> Any:
        """The GBP bank rail client (providers.bank.BankClient), built on first use."""
        if self.bank is None:
            from providers.bank import BankClient

            self.bank = BankClient.from_settings(self.settings)
            self.closers.append(self.bank.close)
        return self.bank

    def kyc_vendor_client(self) -> Any:
        """The KYC vendor client (providers.kyc.KycVendorClient), built once."""
        if self.kyc_vendor is None:
            from providers.kyc import KycVendorClient

            self.kyc_vendor = KycVendorClient.from_settings(self.settings)
            self.closers.append(self.kyc_vendor.close)
        return self.kyc_vendor

    def exchange_adapters(self) -> dict[str, ExecutionAdapter]:
        if self.adapters is None:
            from providers.exchanges.ccxt_adapter import build_adapters

            self.adapters = build_adapters(self.settings)
            self.adapters_from_settings = True
            for adapter in self.adapters.values():
                self.closers.append(adapter.close)
        return self.adapters

    def best_execution_router(self) -> Router:
        if self.router is None:
            adapters = self.exchange_adapters()
            exchanges: dict[str, Any] = {name: a for name, a in adapters.items() if name != "otc"}
            if self.settings.market_data_streams and self.adapters_from_settings:
                exchanges = self.live_book_sources(exchanges)
            self.router = Router(
                exchanges,
                otc=adapters.get("otc"),
                params=RouterParams.from_settings(self.settings),
                on_venue_down=VenueDownAlerts(self.engine).raise_for,
            )
        return self.router

    def live_book_sources(self, adapters: dict[str, Any]) -> dict[str, Any]:
        """The process's live books (one `BookKeeper`, started on first use) as router sources."""
        from models.market import SYMBOLS
        from providers.exchanges.book_streams import build_book_keeper
        from services.live_books import LiveBookSource

        keeper = build_book_keeper(self.settings, SYMBOLS)
        self.closers.append(keeper.stop)
        try:
            asyncio.get_running_loop()
            keeper.start()  # the worker's start: books are live before its first order
        except RuntimeError:
            pass  # built outside a loop: the first book read starts it
        return {name: LiveBookSource(name, keeper, adapter) for name, adapter in adapters.items()}

    def email_sender(self) -> Any:
        """The customer mail sender, always built: an empty `sendgrid_host` means SendGrid itself
        (production), not "no email"; `make run` and the tests point it at the mail sink. None only when
        `send_email` is off."""
        if not self.send_email:
            return None
        if self.email is None:
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
    ledger = deps.shared_ledger()
    orders = OrderActivities(
        engine=deps.engine,
        ledger=ledger,
        router=deps.best_execution_router(),
        adapters=deps.exchange_adapters(),
        settings=deps.settings,
        email=deps.email_sender(),
    )
    pay = PaymentActivities(
        engine=deps.engine,
        ledger=ledger,
        settings=deps.settings,
        bank=deps.bank_client,
        adapters=deps.exchange_adapters,
        email=deps.email_sender(),
    )
    recon = ReconciliationActivities(
        engine=deps.engine, settings=deps.settings, bank=deps.bank_client, adapters=deps.exchange_adapters
    )
    treasury = TreasuryActivities(
        engine=deps.engine, settings=deps.settings, adapters=deps.exchange_adapters, ledger=ledger
    )
    kyc = KycActivities(
        engine=deps.engine, settings=deps.settings, vendor=deps.kyc_vendor_client, email=deps.email_sender()
    )
    screening = ScreeningActivities(engine=deps.engine, settings=deps.settings)
    first_trade = FirstTradeActivities(engine=deps.engine)
    gdpr = GdprActivities(engine=deps.engine, settings=deps.settings, email=deps.email_sender())
    aml = AmlActivities(engine=deps.engine, settings=deps.settings)
    sar = SarActivities(engine=deps.engine, settings=deps.settings)
    # The router's book sources: the worker's live books when streams are on (no venue call per check).
    price_alerts = PriceAlertActivities(
        engine=deps.engine, adapters=lambda: deps.best_execution_router().adapters
    )
    return {
        task_queues.ORDERS: QueueSpec(
            workflows=[PingWorkflow, OrderWorkflow, CoolingOffWorkflow],
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
                first_trade.complete_cooling_off,
                aml.screen_trade,
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
                screening.screen_deposit_payer,
                aml.screen_withdrawal,
                aml.screen_deposit,
                aml.verify_decision,
            ],
        ),
        task_queues.OPS: QueueSpec(
            workflows=[
                FloatMonitorWorkflow,
                HoldAuditWorkflow,
                ReconciliationWorkflow,
                FloatTransferWorkflow,
                SanctionsRefreshWorkflow,
                GdprExportWorkflow,
                RetentionWorkflow,
                AmlSweepWorkflow,
                SarWorkflow,
                PriceAlertsWorkflow,
            ],
            activities=[
                pay.check_float,
                HoldActivities(engine=deps.engine).audit,
                recon.cut_off,
                recon.read_venue,
                recon.read_bank,
                recon.read_wallets,
                recon.read_ledger,
                recon.read_fills,
                recon.check_chain,
                recon.record,
                *treasury_activities(treasury),
                screening.download_lists,
                screening.refresh_list,
                *gdpr_activities(gdpr),
                aml.sweep,
                *sar_activities(sar),
                price_alerts.check,
            ],
        ),
        task_queues.KYC: QueueSpec(
            workflows=[KYCWorkflow],
            activities=[
                kyc.screen,
                kyc.request_check,
                kyc.vendor_review,
                kyc.record,
                kyc.notify,
                kyc.verify_review,
            ],
        ),  # fmt: skip
    }


def treasury_activities(t: TreasuryActivities) -> list[Callable[..., Any]]:
    """The float transfer saga's activities (workflows/treasury.py), with the monitor's plan."""
    return [
        t.record, t.verify_approval, t.send, t.lookup, t.book_sent, t.check_credit, t.book_settled,
        t.needs_attention, t.reject, t.plan_top_ups, t.verify_resolution, t.book_returned,
    ]  # fmt: skip


def gdpr_activities(g: GdprActivities) -> list[Callable[..., Any]]:
    """The GDPR sagas' activities (workflows/gdpr.py)."""
    return [g.build_export, g.email_export_link, g.expire_export, g.retention_check, g.pseudonymise]


def sar_activities(s: SarActivities) -> list[Callable[..., Any]]:
    """The SAR workflow's activities (workflows/sar.py)."""
    return [
        s.verify_decision, s.clear_case, s.freeze_account, s.file_report, s.record_refusal, s.record_consent,
        s.withdrawal_decisions, s.case_is_closed, s.record_decline,
    ]  # fmt: skip
