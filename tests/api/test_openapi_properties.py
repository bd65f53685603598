"""Property test: schemathesis drives every operation of the served ``/openapi.json`` with
generated input, valid and invalid, against the real gateway on a real database (each backend),
and holds every answer to two properties: never a 5xx, and always what the document declares
(status code, content type, body schema).

The gateway listens on loopback on the runner ``pushgate serve`` uses; schemathesis calls it
over HTTP from a worker thread while the test's event loop serves. Generation is derandomized
(Hypothesis's fixed seed), so a run is the same run every time. Set
``PUSHGATE_TEST_SHOW_ANSWERS=1`` (with ``-s``) to see how many answers of each status every
operation got.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import create_app
from gateway.api.protocol import ProblemAppRunner
from gateway.config import Settings
from tests.api.conftest import FCM_TOKEN, FULL_KEY, IOS_TOKEN, FakeClock, make_settings, sha

EXAMPLES_PER_OPERATION = 25  # per generation mode: 50 requests per operation in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
AUTH = {"Authorization": f"Bearer {FULL_KEY}"}
APP = "demo"
RUN = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # a fixed seed: the same cases every run
    database=None,
    deadline=None,  # the database sets the pace, not the generator
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


def steered(case: Any, steer: bool) -> Any:
    """``case``, naming the configured app, a well-formed device token and a real time zone
    when ``steer``. Random ones are refused before anything reaches the database; steering half
    the valid cases sends those all the way to storage."""
    body = case.body
    if steer and isinstance(body, dict):
        items = body.get("notifications")
        for item in [body, *(items if isinstance(items, list) else [])]:
            if isinstance(item, dict) and "app" in item:
                item["app"] = APP
        if body.get("platform") == "ios":
            body["token"] = IOS_TOKEN
        elif body.get("platform") == "android":
            body["token"] = FCM_TOKEN
        body.pop("replaces", None)
        if "timezone" in body:
            body["timezone"] = "Europe/Paris"
    return case


def generation_modes(operation: Any) -> list[GenerationMode]:
    """Valid input for every operation; invalid input too where it takes any input at all."""
    definition = operation.definition.raw
    if "parameters" in definition or "requestBody" in definition:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def cases_for(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    cases = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        cases = st.tuples(cases, st.booleans()).map(lambda pair: steered(*pair))
    return cases


def check_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    answers: Counter[tuple[str, int]],
) -> None:
    """Call ``operation`` with generated ``mode`` input; raises on the first failed check."""

    @RUN
    @given(case=cases_for(operation, mode))
    def keeps_to_the_document(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=AUTH, timeout=30)
        answers[operation.label, response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    keeps_to_the_document()


def drive_every_operation(base_url: str, answers: Counter[tuple[str, int]]) -> list[str]:
    """Run every operation of the served document, counting ``answers`` by operation and
    status; returns a report of each operation that failed a check."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=AUTH, timeout=30)
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in generation_modes(operation):
                try:
                    check_operation(operation, mode, base_url, session, answers)
                except Exception as exc:  # report every operation, not just the first
                    failures.append(f"{operation.label} ({mode}):\n{exc}")
    return failures


@pytest.fixture
def one_app_settings(database_url: str) -> Settings:
    # one app, so a notification may leave `app` out and generated sends reach the database;
    # one key, with every scope and tier
    return make_settings(
        database_url,
        apps=[{"id": APP}],
        api_keys=[
            {
                "name": "full",
                "key_sha256": sha(FULL_KEY),
                "allowed_tiers": ["transactional", "behavioral", "promotional"],
                "scopes": ["*"],
            }
        ],
    )


async def test_every_operation_keeps_to_the_document(
    engine: AsyncEngine, one_app_settings: Settings, clock: FakeClock
) -> None:
    runner = ProblemAppRunner(
        create_app(one_app_settings, engine=engine, clock=clock), access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        answers: Counter[tuple[str, int]] = Counter()
        failures = await asyncio.to_thread(drive_every_operation, f"http://{host}:{port}", answers)
    finally:
        await runner.cleanup()
    if os.environ.get("PUSHGATE_TEST_SHOW_ANSWERS"):
        for (label, status), count in sorted(answers.items()):
            print(f"{label:50} {status} x{count}")
    assert not failures, "\n\n".join(failures)
