"""SQLModel tables, API schemas and workflow I/O types.

Importing this package registers every table on `SQLModel.metadata` (Alembic relies on it).
"""

from models.adjustments import LedgerAdjustment
from models.aml import AmlAlert, AmlCase, AmlRuleVersion
from models.aml_cases import AmlCaseNote, AmlCaseTransaction, AmlFreeze, AmlSarReport
from models.audit import AuditChainHead
from models.auth import AuthSession, AuthThrottle, KnownDevice, PasswordHistory, TotpUsage
from models.compliance import (
    AmlCheck,
    AuditLog,
    KycEvidence,
    KycSubmission,
    KycVendorEvent,
    ReconciliationRun,
)
from models.first_trade_gates import AppropriatenessAttempt, FirstTradeGates
from models.gdpr import AccountClosure, GdprExportRequest
from models.idempotency import ApiIdempotencyKey
from models.ledger import Account, Currency, Hold, LedgerEntry, LedgerTransaction
from models.live_updates import LiveListener
from models.notifications import (
    NotificationDelivery,
    NotificationOutbox,
    NotificationPreference,
    UserNotification,
)
from models.orders import Order, ProviderFill, Trade
from models.payments import (
    BankAccount,
    CryptoDepositAddress,
    CurrencyHalt,
    Deposit,
    DepositReference,
    DepositSuspense,
    FloatTopUp,
    Withdrawal,
    WithdrawalAddress,
    WithdrawalApproval,
)
from models.price_alerts import PriceAlert
from models.rate_limits import RateLimitWindow
from models.reconciliation import ReconciliationAck, ReconciliationHalt
from models.screening import (
    ListUpdate,
    SanctionsCryptoAddress,
    SanctionsEntity,
    SanctionsEntityVersion,
    SanctionsName,
    SanctionsNameKey,
    ScreeningDismissal,
    ScreeningSubject,
)
from models.staff import StaffSession
from models.treasury import FloatTransfer, FloatTransferApproval
from models.users import StaffRole, User, UserStatus

__all__ = [
    "Account",
    "LedgerAdjustment",
    "AccountClosure",
    "AmlAlert",
    "AmlCase",
    "AmlCaseNote",
    "AmlCaseTransaction",
    "AmlFreeze",
    "AmlSarReport",
    "AmlRuleVersion",
    "AmlCheck",
    "AppropriatenessAttempt",
    "ApiIdempotencyKey",
    "AuditChainHead",
    "AuditLog",
    "AuthSession",
    "AuthThrottle",
    "BankAccount",
    "CryptoDepositAddress",
    "CurrencyHalt",
    "Currency",
    "Deposit",
    "DepositReference",
    "DepositSuspense",
    "FloatTopUp",
    "FirstTradeGates",
    "FloatTransfer",
    "FloatTransferApproval",
    "GdprExportRequest",
    "KnownDevice",
    "KycEvidence",
    "KycSubmission",
    "KycVendorEvent",
    "Hold",
    "LedgerEntry",
    "LedgerTransaction",
    "ListUpdate",
    "NotificationDelivery",
    "NotificationOutbox",
    "NotificationPreference",
    "Order",
    "PasswordHistory",
    "ProviderFill",
    "RateLimitWindow",
    "ReconciliationAck",
    "ReconciliationHalt",
    "ReconciliationRun",
    "SanctionsCryptoAddress",
    "SanctionsEntity",
    "SanctionsEntityVersion",
    "SanctionsName",
    "SanctionsNameKey",
    "ScreeningDismissal",
    "ScreeningSubject",
    "StaffRole",
    "StaffSession",
    "TotpUsage",
    "Trade",
    "User",
    "UserNotification",
    "UserStatus",
    "Withdrawal",
    "WithdrawalAddress",
    "WithdrawalApproval",
    "PriceAlert",
    "LiveListener",
]
