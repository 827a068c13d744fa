"""The notifiable events and the preference category each belongs to (docs/architecture.md §C.9).

Customers choose channels per category, not per event. `SECURITY` and `ACCOUNT` (verification, password
reset: the mail is the action itself) cannot be turned off; `OPS` events have no customer and go to the
ops mailbox and webhook.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class Category(StrEnum):
    FUNDS = "funds"
    TRADING = "trading"
    KYC = "kyc"
    SECURITY = "security"
    ACCOUNT = "account"
    PRICE_ALERTS = "price_alerts"
    OPS = "ops"


# A trade worth more than this is also told as a "large trade" (seed §C.9).
LARGE_TRADE_GBP = Decimal("10000")

# Categories a customer cannot turn off (on any channel they have an address for).
MANDATORY = frozenset({Category.SECURITY, Category.ACCOUNT})


class NotificationEvent(StrEnum):
    DEPOSIT_CONFIRMED = "deposit_confirmed"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_AWAITING_APPROVAL = "withdrawal_awaiting_approval"
    WITHDRAWAL_APPROVED = "withdrawal_approved"
    WITHDRAWAL_COMPLETED = "withdrawal_completed"
    WITHDRAWAL_FAILED = "withdrawal_failed"
    ORDER_FILLED = "order_filled"
    ORDER_PARTIALLY_FILLED = "order_partially_filled"
    ORDER_CANCELLED = "order_cancelled"
    LARGE_TRADE = "large_trade"
    KYC_STATUS_CHANGED = "kyc_status_changed"
    SECURITY_NEW_DEVICE = "security_new_device"
    SECURITY_PASSWORD_CHANGED = "security_password_changed"
    SECURITY_2FA_ENABLED = "security_2fa_enabled"
    SECURITY_2FA_DISABLED = "security_2fa_disabled"
    SECURITY_SESSION_REVOKED = "security_session_revoked"
    BANK_ACCOUNT_CONFIRMED = "bank_account_confirmed"
    EMAIL_VERIFICATION = "email_verification"
    ACCOUNT_EXISTS = "account_exists"
    PASSWORD_RESET = "password_reset"
    PRICE_ALERT = "price_alert"
    OPS_RECONCILIATION_MISMATCH = "ops_reconciliation_mismatch"
    OPS_FLOAT_LOW = "ops_float_low"
    OPS_FAILED_LOGINS = "ops_failed_logins"
    OPS_LARGE_WITHDRAWAL = "ops_large_withdrawal"
    OPS_VENUE_DOWN = "ops_venue_down"
    OPS_ALERT = "ops_alert"  # any other ops alert (services.alerts.alert)


CATEGORY: dict[NotificationEvent, Category] = {
    NotificationEvent.DEPOSIT_CONFIRMED: Category.FUNDS,
    NotificationEvent.WITHDRAWAL_REQUESTED: Category.FUNDS,
    NotificationEvent.WITHDRAWAL_AWAITING_APPROVAL: Category.FUNDS,
    NotificationEvent.WITHDRAWAL_APPROVED: Category.FUNDS,
    NotificationEvent.WITHDRAWAL_COMPLETED: Category.FUNDS,
    NotificationEvent.WITHDRAWAL_FAILED: Category.FUNDS,
    NotificationEvent.ORDER_FILLED: Category.TRADING,
    NotificationEvent.ORDER_PARTIALLY_FILLED: Category.TRADING,
    NotificationEvent.ORDER_CANCELLED: Category.TRADING,
    NotificationEvent.LARGE_TRADE: Category.TRADING,
    NotificationEvent.KYC_STATUS_CHANGED: Category.KYC,
    NotificationEvent.SECURITY_NEW_DEVICE: Category.SECURITY,
    NotificationEvent.SECURITY_PASSWORD_CHANGED: Category.SECURITY,
    NotificationEvent.SECURITY_2FA_ENABLED: Category.SECURITY,
    NotificationEvent.SECURITY_2FA_DISABLED: Category.SECURITY,
    NotificationEvent.SECURITY_SESSION_REVOKED: Category.SECURITY,
    NotificationEvent.BANK_ACCOUNT_CONFIRMED: Category.SECURITY,
    NotificationEvent.EMAIL_VERIFICATION: Category.ACCOUNT,
    NotificationEvent.ACCOUNT_EXISTS: Category.ACCOUNT,
    NotificationEvent.PASSWORD_RESET: Category.ACCOUNT,
    NotificationEvent.PRICE_ALERT: Category.PRICE_ALERTS,
    NotificationEvent.OPS_RECONCILIATION_MISMATCH: Category.OPS,
    NotificationEvent.OPS_FLOAT_LOW: Category.OPS,
    NotificationEvent.OPS_FAILED_LOGINS: Category.OPS,
    NotificationEvent.OPS_LARGE_WITHDRAWAL: Category.OPS,
    NotificationEvent.OPS_VENUE_DOWN: Category.OPS,
    NotificationEvent.OPS_ALERT: Category.OPS,
}


def category_of(event: str) -> Category:
    """The preference category of `event`; unknown names are refused (a typo must not go unnoticed)."""
    return CATEGORY[NotificationEvent(event)]
