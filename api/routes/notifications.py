"""Notifications: the customer's in-app feed and preferences, the providers' signed delivery reports, and
ops' dead letters (issue 17)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.auth_deps import problem_responses, require_role
from api.deps import EngineDep, SettingsDep
from api.routes.accounts import Customer
from models.notifications_api import (
    CallbackAck,
    DeadDeliveryOut,
    DeadLetterPage,
    MarkedRead,
    NotificationOut,
    NotificationPage,
    PreferenceOut,
    PreferencesOut,
    PreferencesUpdate,
    UnreadCount,
)
from models.users import User
from services.notifications import callbacks, dead_letters, feed, preferences
from services.pagination import CURSOR_MAX_LENGTH

router = APIRouter(tags=["notifications"])
CUSTOMER = problem_responses(401, 403, 422)
Ops = Annotated[User, Depends(require_role("ops"))]

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


@router.get("/notifications", response_model=NotificationPage, responses=CUSTOMER)
async def list_notifications(
    user: Customer,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
    unread: bool = False,
) -> NotificationPage:
    """Your notifications, newest first."""
    rows, next_cursor = await feed.page(engine, user.id, limit=limit, cursor=cursor, unread_only=unread)
    return NotificationPage(
        notifications=[NotificationOut.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


@router.get("/notifications/unread-count", response_model=UnreadCount, responses=CUSTOMER)
async def unread_count(user: Customer, engine: EngineDep) -> UnreadCount:
    """How many of your notifications are unread."""
    return UnreadCount(unread=await feed.unread_count(engine, user.id))


@router.post("/notifications/read-all", response_model=MarkedRead, responses=CUSTOMER)
async def mark_all_read(user: Customer, engine: EngineDep) -> MarkedRead:
    """Mark all your notifications read."""
    return MarkedRead(marked=await feed.mark_all_read(engine, user.id))


@router.post(
    "/notifications/{notification_id}/read", status_code=204, responses=problem_responses(401, 403, 404)
)
async def mark_read(notification_id: uuid.UUID, user: Customer, engine: EngineDep) -> None:
    """Mark one of your notifications read."""
    await feed.mark_read(engine, user.id, notification_id)


@router.get("/notifications/preferences", response_model=PreferencesOut, responses=CUSTOMER)
async def get_preferences(user: Customer, engine: EngineDep) -> PreferencesOut:
    """Which categories reach you on which channel (security messages cannot be turned off)."""
    async with engine.connect() as conn:
        found = await preferences.list_preferences(conn, user.id)
    return PreferencesOut(preferences=[PreferenceOut.model_validate(p, from_attributes=True) for p in found])


@router.put("/notifications/preferences", response_model=PreferencesOut, responses=CUSTOMER)
async def put_preferences(body: PreferencesUpdate, user: Customer, engine: EngineDep) -> PreferencesOut:
    """Turn categories on or off per channel; all changes apply or none."""
    changes: list[tuple[str, str, bool]] = [(p.category, p.channel, p.enabled) for p in body.preferences]
    async with engine.begin() as conn:
        found = await preferences.set_preferences(conn, user.id, changes)
    return PreferencesOut(preferences=[PreferenceOut.model_validate(p, from_attributes=True) for p in found])


@router.post("/webhooks/sendgrid/events", response_model=CallbackAck, responses=problem_responses(400, 401))
async def sendgrid_events(request: Request, engine: EngineDep, settings: SettingsDep) -> CallbackAck:
    """SendGrid's signed Event Webhook: delivered, bounced and dropped mail."""
    body = await request.body()
    callbacks.verify_sendgrid(
        settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(SENDGRID_SIGNATURE),
        request.headers.get(SENDGRID_TIMESTAMP),
        tolerance_seconds=settings.sendgrid_webhook_tolerance_seconds,
    )
    try:
        events = json.loads(body)
    except ValueError as e:
        raise callbacks.MalformedCallback("the body is not JSON") from e
    return CallbackAck(recorded=await callbacks.record_sendgrid_events(engine, events))


@router.post("/webhooks/twilio/status", response_model=CallbackAck, responses=problem_responses(400, 401))
async def twilio_status(request: Request, engine: EngineDep, settings: SettingsDep) -> CallbackAck:
    """Twilio's signed SMS status callback."""
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    url = f"{settings.public_base_url.rstrip('/')}{request.url.path}"
    if request.url.query:
        url = f"{url}?{request.url.query}"
    signature = request.headers.get("X-Twilio-Signature")
    callbacks.verify_twilio(settings.twilio_auth_token, url, params, signature)
    recorded = await callbacks.record_twilio_status(engine, request.query_params.get("delivery_id"), params)
    return CallbackAck(recorded=int(recorded))


@router.get(
    "/admin/notifications/dead-letters", response_model=DeadLetterPage, responses=problem_responses(401, 403)
)
async def list_dead_letters(
    staff: Ops,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> DeadLetterPage:
    """Deliveries that kept failing and were parked (ops role)."""
    rows, next_cursor = await dead_letters.list_dead(engine, limit=limit, cursor=cursor)
    return DeadLetterPage(
        deliveries=[DeadDeliveryOut.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/admin/notifications/deliveries/{delivery_id}/replay",
    status_code=204,
    responses=problem_responses(401, 403, 409),
)
async def replay_delivery(delivery_id: uuid.UUID, staff: Ops, engine: EngineDep) -> None:
    """Queue a dead delivery again, with a fresh attempt budget (ops role)."""
    await dead_letters.replay(engine, delivery_id, staff_id=staff.id)
