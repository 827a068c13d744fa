"""Property-based fuzzing of the KYC operations (customer, vendor webhook, compliance) against the served
app: no 5xx, and every response conforms to the documented schema. Random webhook bodies carry no valid
digest, so they must all be 401."""

from __future__ import annotations

import asyncio

import schemathesis

from api.main import create_app
from tests.kyc.conftest import Stack, make_user
from tests.schema_fuzz import fuzz


async def test_kyc_operations_conform_to_the_schema_for_customers_and_compliance(stack: Stack) -> None:
    customer = await make_user(stack, tier=1)
    officer = await make_user(stack, roles=["compliance"])
    app = create_app(stack.settings)
    schema = schemathesis.openapi.from_dict(app.openapi()).include(path_regex="kyc")
    schema.config.update(base_url=stack.api_url)
    seen, failures = await asyncio.to_thread(fuzz, schema, customer.token, max_examples=8)
    assert not failures, failures
    assert len({label for label, _ in seen}) >= 8, seen
    assert {status for (label, status) in seen if label == "POST /api/v1/webhooks/kyc"} <= {401, 422}
    seen_staff, failures = await asyncio.to_thread(fuzz, schema, officer.token, max_examples=8)
    assert not failures, failures
    assert ("GET /api/v1/admin/kyc/reviews", 200) in seen_staff
