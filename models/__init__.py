"""SQLModel tables, API schemas and workflow I/O types.

Importing this package registers every table on `SQLModel.metadata` (Alembic relies on it).
"""

from models.compliance import AmlCheck, AuditLog, KycSubmission, ReconciliationRun
from models.ledger import Account, LedgerEntry
from models.orders import Order, ProviderFill, Trade
from models.payments import Deposit, Withdrawal
from models.users import StaffRole, User, UserStatus

__all__ = [
    "Account",
    "AmlCheck",
    "AuditLog",
    "Deposit",
    "KycSubmission",
    "LedgerEntry",
    "Order",
    "ProviderFill",
    "ReconciliationRun",
    "StaffRole",
    "Trade",
    "User",
    "UserStatus",
    "Withdrawal",
]
