"""Proof of liabilities (issue 20 item 7): the published root and total per currency, and each customer's
inclusion proof (checked offline with `python -m services.proof_verifier proof.json`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth_deps import CurrentUser, problem_responses
from api.deps import EngineDep, SettingsDep
from api.errors import ProblemError
from models.assets import SCALES
from services import proof_of_liabilities as pol

router = APIRouter(tags=["proof-of-liabilities"])


def _secret(settings: SettingsDep) -> str:
    return f"{settings.jwt_secret}|proof-of-liabilities"  # a salt key of its own, never the JWT key itself


def _currency(currency: str) -> str:
    if currency not in SCALES:
        raise ProblemError(404, "unknown_currency", f"no currency {currency}")
    return currency


@router.get("/proof-of-liabilities/{currency}", responses=problem_responses(404))
async def published_root(currency: str, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    """Today's root and total of customer liabilities in a currency (books at 00:00 UTC)."""
    tree = await pol.tree_for(engine, _currency(currency), pol.daily_cut_off(), _secret(settings))
    return {
        "currency": currency, "cut_off": tree.cut_off.isoformat(), "root": tree.root.hash,
        "total": f"{tree.root.sum:.{tree.scale}f}", "leaves": len(tree.index),
    }  # fmt: skip


@router.get("/accounts/proof/{currency}", responses=problem_responses(401, 403, 404))
async def my_proof(
    currency: str, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> dict[str, Any]:
    """Your inclusion proof in today's tree (your balance, salt and the path to the published root)."""
    tree = await pol.tree_for(engine, _currency(currency), pol.daily_cut_off(), _secret(settings))
    proof = tree.proof(user.id)
    if proof is None:
        raise ProblemError(404, "not_found", f"you had no {currency} account at the cut-off")
    return proof
