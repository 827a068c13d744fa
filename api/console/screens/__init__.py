"""The console's investigation screens (issue 18 item 2): customer view, reconciliation runs and the
two-person resume, maker-checker ledger adjustments, KYC review, AML cases. `ROUTERS` is mounted by
`api.console.install` with the other screens; each module registers its own navigation entry."""

from __future__ import annotations

from fastapi import APIRouter

from api.console.screens import adjustments, aml, customers, kyc, reconciliation

ROUTERS: list[APIRouter] = [
    customers.router,
    reconciliation.router,
    adjustments.router,
    kyc.router,
    aml.router,
]

__all__ = ["ROUTERS"]
