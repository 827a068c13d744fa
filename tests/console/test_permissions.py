"""The permission matrix: four eyes stay separate from staff management, customers hold nothing, and
every screen and permission is described."""

from __future__ import annotations

from api.console.templating import NAV
from services.staff.permissions import DESCRIPTIONS, MATRIX, Permission, is_staff, permissions_of


def test_customers_hold_no_permission_and_are_not_staff() -> None:
    assert permissions_of([]) == frozenset()
    assert permissions_of(["customer", "root"]) == frozenset()
    assert not is_staff([]) and not is_staff(["root"]) and is_staff(["support"])


def test_only_approvers_decide_withdrawals_and_admins_do_not_approve_money() -> None:
    deciders = {role.value for role, granted in MATRIX.items() if Permission.WITHDRAWAL_DECIDE in granted}
    assert deciders == {"approver"}
    admin = permissions_of(["admin"])
    assert Permission.STAFF_MANAGE in admin and Permission.ADJUSTMENT_APPROVE not in admin
    support = permissions_of(["support"])
    assert support == {Permission.DASHBOARD_VIEW, Permission.CUSTOMER_VIEW, Permission.WITHDRAWAL_VIEW}


def test_roles_combine_and_every_permission_and_screen_is_described() -> None:
    assert permissions_of(["support", "approver"]) == MATRIX[next(r for r in MATRIX if r.value == "approver")]
    assert set(DESCRIPTIONS) == set(Permission)
    assert {e.permission for e in NAV} <= set(Permission)
