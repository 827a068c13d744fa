"""A signed bank event carrying NUL characters (which PostgreSQL text and jsonb cannot store) is held
in suspense like any impossible event, not answered 500 (which the bank would redeliver for ever)."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import text

from providers.bank import SIGNATURE_HEADER, TIMESTAMP_HEADER
from sandbox.bank import sign
from tests.payments.conftest import Stack


async def test_a_signed_event_with_nul_characters_is_held_not_a_500(stack: Stack) -> None:
    tx = f"tx-{uuid.uuid4().hex[:12]}\u0000"
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment.received",
            "data": {"bank_tx_id": tx, "amount": "-1", "currency": "GBP\u0000", "reference": "BRK\u0000X",
                     "\u0000": [{"": "\u0000"}]},
        }
    ).encode()  # fmt: skip
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: "v1=" + sign(stack.settings.bank_webhook_secret, stamp, body),
    }
    async with stack.http() as c:
        r = await c.post("/api/v1/webhooks/bank", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "held", r.text
        again = await c.post("/api/v1/webhooks/bank", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "held", again.text
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT payload, currency FROM deposit_suspense WHERE external_id = :x"),
                {"x": tx.replace("\u0000", "\\u0000")},
            )
        ).all()
    assert len(rows) == 1  # held once, with the NULs written out
    assert rows[0][0]["reference"] == "BRK\\u0000X" and rows[0][1] == "GBP\\u0000"
