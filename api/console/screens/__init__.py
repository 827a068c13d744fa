"""The console's investigation screens (issue 18 item 2): customer view, reconciliation runs and the
two-person resume, maker-checker ledger adjustments, KYC review. `ROUTERS` is mounted by
`api.console.install` with the other screens; each module registers its own navigation entry."""

from __future__ import annotations

from fastapi import APIRouter

from api.console.screens import adjustments, customers, kyc, reconciliation

ROUTERS: list[APIRouter] = [customers.router, reconciliation.router, adjustments.router, kyc.router]

__all__ = ["ROUTERS"]
