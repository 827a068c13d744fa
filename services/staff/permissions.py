"""The permission matrix: which staff role may do what in the console, in one place.

Routes ask for a `Permission` (`api/console/deps.py: require(Permission.X)`), templates hide a button
its viewer lacks the permission for (`can(...)`), and the admin page prints this table. A role grants
exactly the permissions listed; `admin` manages staff and reads everything, but does not approve money
movements unless also given `approver` (four eyes stay with the people who hold them).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from models.users import StaffRole


class Permission(StrEnum):
    DASHBOARD_VIEW = "dashboard.view"
    CUSTOMER_VIEW = "customer.view"
    WITHDRAWAL_VIEW = "withdrawal.view"
    WITHDRAWAL_DECIDE = "withdrawal.decide"
    KYC_REVIEW = "kyc.review"
    AML_CASES = "aml.cases"
    RECONCILIATION_VIEW = "reconciliation.view"
    RECONCILIATION_RESUME = "reconciliation.resume"
    ADJUSTMENT_PROPOSE = "adjustment.propose"
    ADJUSTMENT_APPROVE = "adjustment.approve"
    AUDIT_VIEW = "audit.view"
    AUDIT_VERIFY = "audit.verify"
    STAFF_MANAGE = "staff.manage"
    PERMISSIONS_VIEW = "permissions.view"


P = Permission
R = StaffRole

MATRIX: dict[StaffRole, frozenset[Permission]] = {
    R.SUPPORT: frozenset({P.DASHBOARD_VIEW, P.CUSTOMER_VIEW, P.WITHDRAWAL_VIEW}),
    R.APPROVER: frozenset({P.DASHBOARD_VIEW, P.CUSTOMER_VIEW, P.WITHDRAWAL_VIEW, P.WITHDRAWAL_DECIDE,
                           P.ADJUSTMENT_APPROVE}),
    R.OPS: frozenset({P.DASHBOARD_VIEW, P.CUSTOMER_VIEW, P.WITHDRAWAL_VIEW, P.RECONCILIATION_VIEW,
                      P.RECONCILIATION_RESUME, P.ADJUSTMENT_PROPOSE, P.AUDIT_VIEW}),
    R.COMPLIANCE: frozenset({P.DASHBOARD_VIEW, P.CUSTOMER_VIEW, P.WITHDRAWAL_VIEW, P.KYC_REVIEW, P.AML_CASES,
                             P.RECONCILIATION_VIEW, P.AUDIT_VIEW, P.AUDIT_VERIFY}),
    R.ADMIN: frozenset({P.DASHBOARD_VIEW, P.CUSTOMER_VIEW, P.WITHDRAWAL_VIEW, P.RECONCILIATION_VIEW,
                        P.AUDIT_VIEW, P.AUDIT_VERIFY, P.STAFF_MANAGE, P.PERMISSIONS_VIEW}),
}  # fmt: skip

DESCRIPTIONS: dict[Permission, str] = {
    P.DASHBOARD_VIEW: "See the dashboard (health, halts, queues, floats)",
    P.CUSTOMER_VIEW: "Look up a customer and their history",
    P.WITHDRAWAL_VIEW: "See the withdrawal approval queue",
    P.WITHDRAWAL_DECIDE: "Approve or reject a withdrawal (TOTP per decision, never one's own)",
    P.KYC_REVIEW: "Decide KYC reviews",
    P.AML_CASES: "Work AML alerts and cases",
    P.RECONCILIATION_VIEW: "See reconciliation runs and their unmatched items",
    P.RECONCILIATION_RESUME: "Resume a halted currency (two people)",
    P.ADJUSTMENT_PROPOSE: "Propose a manual ledger adjustment",
    P.ADJUSTMENT_APPROVE: "Approve another person's ledger adjustment",
    P.AUDIT_VIEW: "Search the audit log",
    P.AUDIT_VERIFY: "Verify the audit log's hash chain",
    P.STAFF_MANAGE: "Create staff, set roles, reset TOTP enrolment, disable",
    P.PERMISSIONS_VIEW: "See this permission matrix",
}

STAFF_ROLES: tuple[str, ...] = tuple(r.value for r in StaffRole)


def permissions_of(roles: Iterable[str]) -> frozenset[Permission]:
    """Every permission `roles` grant together (unknown role names grant nothing)."""
    granted: set[Permission] = set()
    for role in roles:
        if role in STAFF_ROLES:
            granted |= MATRIX[StaffRole(role)]
    return frozenset(granted)


def is_staff(roles: Iterable[str]) -> bool:
    """Staff are users with at least one staff role; customers have none."""
    return any(role in STAFF_ROLES for role in roles)
