"""The customer's price alerts (docs/architecture.md §C.9): set, list and delete; the checks and the
notifications are `services.price_alerts` and the outbox's."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.auth_deps import VerifiedUser, problem_responses
from api.deps import SessionDep, SettingsDep
from models.price_alerts import PriceAlertCreate, PriceAlertList, PriceAlertOut
from services import price_alerts

router = APIRouter(prefix="/price-alerts", tags=["price alerts"])


@router.post(
    "",
    response_model=PriceAlertOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_alert(
    body: PriceAlertCreate, user: VerifiedUser, session: SessionDep, settings: SettingsDep
) -> PriceAlertOut:
    """Tell me when a symbol's price goes above or below a level (once, or every time it crosses anew)."""
    return await price_alerts.create(session, user.id, body, limit=settings.price_alert_limit_per_customer)


@router.get("", response_model=PriceAlertList, responses=problem_responses(401, 403))
async def list_alerts(user: VerifiedUser, session: SessionDep, settings: SettingsDep) -> PriceAlertList:
    """Your price alerts, oldest first, with how often each has fired."""
    items = await price_alerts.list_alerts(session, user.id)
    return PriceAlertList(items=items, limit=settings.price_alert_limit_per_customer)


@router.delete(
    "/{alert_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 403, 404, 422)
)
async def delete_alert(alert_id: uuid.UUID, user: VerifiedUser, session: SessionDep) -> None:
    """Delete one of your price alerts."""
    await price_alerts.delete(session, user.id, alert_id)
