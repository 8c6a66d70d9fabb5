"""Hostile input, generated: Schemathesis sends schema-driven requests, valid and invalid, to
every operation of the running platform's ``/openapi.json``, as a signed-in user, with a bounded
budget. No answer may be a 5xx, and every answer must match the documented content type and
schema (errors as ``application/problem+json``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth

EXAMPLES = 12  # per operation, valid and invalid input mixed: about 800 requests in all


@pytest.fixture(scope="session")
def api_schema(platform: RunningPlatform) -> Any:
    return schemathesis.openapi.from_url(f"{platform.base_url}/openapi.json")


@pytest.fixture(scope="session")
def signed_in(platform: RunningPlatform) -> dict[str, str]:
    with platform.client() as http:
        return auth(account(http, f"fuzz-{uuid.uuid4().hex[:8]}@example.org"))


def fuzz(operation: Any, headers: dict[str, str]) -> None:
    """Up to EXAMPLES requests to one operation; raises Schemathesis' failures."""

    @given(st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                     operation.as_strategy(GenerationMode.NEGATIVE)))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def probe(case: Any) -> None:
        response = case.call(headers=headers, timeout=30)
        case.validate_response(response, checks=(
            not_a_server_error, content_type_conformance, response_schema_conformance))

    probe()


def test_no_input_makes_a_server_error(api_schema: Any, signed_in: dict[str, str]) -> None:
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:  # providers do not sign in
            fuzz(operation, {} if "webhook" in operation.path else signed_in)
        except (Exception, BaseExceptionGroup) as exc:  # one failure must not hide the next
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations > 40
    assert not failures, "\n\n".join(failures)
