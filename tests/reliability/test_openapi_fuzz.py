"""Every operation of every service's OpenAPI, fuzzed by schemathesis over real HTTP against the six
services as processes: requests that fit the schema and requests that break it, with an admin
key. No answer is a 5xx, and every answer of a documented status matches its documented schema.
LEADFLOW_FUZZ_EXAMPLES sets the examples per operation and mode. `make test` draws the same
examples on every run (a failure there is the code's, reproducible); `make soak` sets
LEADFLOW_FUZZ_RANDOM=1 to draw new ones each time and explore further."""

import asyncio
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from leadflow_tools.registry import SERVICE_ORDER
from pipeline import make_services, start_services, stop_services
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from support.harness import ADMIN

EXAMPLES = int(os.environ.get("LEADFLOW_FUZZ_EXAMPLES", "12"))
RANDOM = os.environ.get("LEADFLOW_FUZZ_RANDOM", "") == "1"
# Errors are documented as application/problem+json with the Problem schema (the app factory's
# `document_problems`), so their content type and shape are checked too.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
async def running(stack, tmp_path_factory):
    settings = await stack.isolated_settings(hubspot_client_secret="fuzz-secret")
    services = make_services(settings, tmp_path_factory.mktemp("fuzz"))
    try:
        await start_services(services)
        yield services
    finally:
        stop_services(services)


def fuzz(base_url: str) -> list[str]:
    """Run every operation in both modes; returns what failed (empty when everything held)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=not RANDOM,
                suppress_health_check=list(HealthCheck),
            )
            def check(case) -> None:
                case.call_and_validate(base_url=base_url, headers=ADMIN, checks=CHECKS, timeout=30)

            try:
                check()
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode}]: {exc}"[:3000]
                )
    assert operations >= 3, f"only {operations} operations in {base_url}/openapi.json"
    return failures


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", SERVICE_ORDER)
async def test_no_5xx_and_answers_match_the_openapi(running, name):
    failures = await asyncio.to_thread(fuzz, running[name].url)
    assert not failures, "\n\n".join(failures)
