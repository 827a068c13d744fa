"""Property-based fuzzing of the adjustments admin API (`/api/v1/admin/adjustments`) against the served
app, as an ops maker and as an approver: no 5xx, and every response conforms to the documented schema."""

from __future__ import annotations

import asyncio

import schemathesis

from api.main import create_app
from tests.payments.conftest import Stack, make_user
from tests.schema_fuzz import fuzz


async def test_adjustment_operations_conform_to_the_schema_for_makers_and_checkers(stack: Stack) -> None:
    maker = await make_user(stack, roles=["ops"])
    checker = await make_user(stack, roles=["approver"])
    app = create_app(stack.settings)
    schema = schemathesis.openapi.from_dict(app.openapi()).include(path_regex="admin/adjustments")
    schema.config.update(base_url=stack.api_url)
    for staff in (maker, checker):
        seen, failures = await asyncio.to_thread(fuzz, schema, staff.token, max_examples=5)
        assert not failures, failures
        assert len({label for label, _ in seen}) == 4, seen
        assert ("GET /api/v1/admin/adjustments", 200) in seen
