"""Property-based fuzzing of the adjustments admin API (`/api/v1/admin/adjustments`) against the served
app, as an ops maker and as an approver: no 5xx, and every response conforms to the documented schema."""

from __future__ import annotations

import asyncio
from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from tests.payments.conftest import Stack, make_user

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _fuzz(schema: schemathesis.BaseSchema, token: str) -> tuple[Counter[tuple[str, int]], dict[str, str]]:
    statuses: Counter[tuple[str, int]] = Counter()
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @hypothesis_settings(
                max_examples=5,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call_and_validate(
                    headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=30
                )
                statuses[case.operation.label, response.status_code] += 1

            try:
                check()
            except Unsatisfiable:
                pass
            except FailureGroup as e:
                failures[f"{operation.label} {mode.value}"] = str(e)
    return statuses, failures


async def test_adjustment_operations_conform_to_the_schema_for_makers_and_checkers(stack: Stack) -> None:
    maker = await make_user(stack, roles=["ops"])
    checker = await make_user(stack, roles=["approver"])
    app = create_app(stack.settings)
    schema = schemathesis.openapi.from_dict(app.openapi()).include(path_regex="admin/adjustments")
    schema.config.update(base_url=stack.api_url)
    for staff in (maker, checker):
        seen, failures = await asyncio.to_thread(_fuzz, schema, staff.token)
        assert not failures, failures
        assert len({label for label, _ in seen}) == 4, seen
        assert ("GET /api/v1/admin/adjustments", 200) in seen
