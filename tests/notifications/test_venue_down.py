"""A venue's circuit breaker opening tells ops "venue down", once per venue per quarter-hour, whichever of
the processes (each with its own breakers) saw it first; each process still writes its audit row."""

from __future__ import annotations

from sqlalchemy import text

from services.router import Router, RouterParams
from services.venue_alerts import ACTION, VenueDownAlerts, quarter
from tests.notifications.conftest import Stack, drain

AT = 1_800_000_000.0  # a fixed wall clock: both processes are in the same quarter-hour


async def _outbox_rows(stack: Stack, dedupe_key: str) -> int:
    async with stack.engine.connect() as c:
        return int(
            (
                await c.execute(
                    text("SELECT count(*) FROM notification_outbox WHERE dedupe_key = :k"), {"k": dedupe_key}
                )
            ).scalar_one()
        )


async def _audit_rows(stack: Stack, venue: str) -> int:
    async with stack.engine.connect() as c:
        return int(
            (
                await c.execute(
                    text("SELECT count(*) FROM audit_log WHERE action = :a AND target_id = :v"),
                    {"a": ACTION, "v": venue},
                )
            ).scalar_one()
        )


async def test_a_breaker_opening_tells_ops_the_venue_is_down_once_per_quarter_hour(stack: Stack) -> None:
    venue = "kraken-test-down"
    params = RouterParams(failure_threshold=3)
    alerts_a, alerts_b = (
        VenueDownAlerts(stack.engine, clock=lambda: AT),
        VenueDownAlerts(stack.engine, clock=lambda: AT),
    )
    process_a = Router({}, params=params, on_venue_down=alerts_a.raise_for)
    process_b = Router({}, params=params, on_venue_down=alerts_b.raise_for)

    for _ in range(2):  # below the threshold: the breaker stays closed, nobody is told
        process_a.record_failure(venue)
    await alerts_a.drain()
    assert await _audit_rows(stack, venue) == 0

    for _ in range(3):  # the third failure opens it; failures while open do not tell again
        process_a.record_failure(venue)
    for _ in range(3):  # another process sees the same outage
        process_b.record_failure(venue)
    await alerts_a.drain()
    await alerts_b.drain()

    key = f"{ACTION}:{venue}:{quarter(AT)}"
    assert await _outbox_rows(stack, key) == 1  # ops are told once
    assert await _audit_rows(stack, venue) == 2  # each process's evidence is kept

    async def told() -> bool:
        found = await stack.deliveries(key)
        return len(found) == 2 and all(d["status"] in ("SENT", "DELIVERED") for d in found.values())

    await drain(stack.dispatcher(), told, what="venue-down to the ops mailbox and webhook")
    mails = [m for m in await stack.mails(stack.settings.ops_alert_email) if venue in m["subject"]]
    assert len(mails) == 1 and mails[0]["subject"].startswith("[OPS] "), mails
