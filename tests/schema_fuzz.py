"""Property-based fuzzing of served API operations with schemathesis, shared by the packages' schema tests:
no 5xx, and every response conforms to the documented schema (status code, content type, headers, body)."""

from __future__ import annotations

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

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(
    schema: schemathesis.BaseSchema, token: str, *, max_examples: int
) -> tuple[Counter[tuple[str, int]], dict[str, str]]:
    """Every operation of `schema`, valid and invalid inputs, as the holder of `token`, driven by hypothesis
    directly (schemathesis' pytest integration does not work with pytest 9; blocking: run it in a thread
    from async tests). Returns (count per (operation, status), failures per operation and mode);
    derandomised, so a failure is the same on every run."""
    statuses: Counter[tuple[str, int]] = Counter()
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @hypothesis_settings(
                max_examples=max_examples,
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
                # No parameters and no body (e.g. GET /balances): there is no invalid input to make.
                if mode is not GenerationMode.NEGATIVE:
                    failures[f"{operation.label} {mode.value}"] = "no positive example could be generated"
            except FailureGroup as e:  # failed checks: collected, so one run reports every operation
                failures[f"{operation.label} {mode.value}"] = str(e)
    return statuses, failures
