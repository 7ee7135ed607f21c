"""Property-based fuzzing of the whole OpenAPI schema against a real backend.

Positive and negative cases for every operation, with a valid token (the 401 paths
are covered in test_api_validation and test_api_security). Every response is checked
against the schema, not only for "no 5xx": its status code is documented, its content
type and headers are the declared ones, and its body validates against the declared
model. Cases are random; the seed is printed, and FLOWERBED_FUZZ_SEED=<seed> replays a
run. Valid POST /training/start cases really start Flower runs; each is stopped at once
through the API, and all are stopped at the end, so the shared federation is left idle.
"""

from __future__ import annotations

import os
import random

import httpx
import pytest
import schemathesis
from backend_fixture import Backend, wait_for
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.federation

EXAMPLES_PER_OPERATION = 60
MIN_TOTAL_EXAMPLES = 500
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SEED = int(os.environ.get("FLOWERBED_FUZZ_SEED") or random.randrange(2**32))


def test_responses_conform_to_the_schema_and_never_5xx(backend: Backend) -> None:
    headers = {"Authorization": f"Bearer {backend.token}"}
    schema = schemathesis.openapi.from_url(f"{backend.base_url}/openapi.json", headers=headers)
    client = httpx.Client(base_url=backend.base_url, headers=headers, timeout=60)
    calls: dict[str, int] = {}
    failures: dict[str, str] = {}  # one example per kind of failure
    started: list[str] = []

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @seed(SEED)
        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            label = case.operation.label
            response = case.call(base_url=backend.base_url, headers=headers, timeout=60)
            calls[label] = calls.get(label, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' Failure(Group): what and why
                failures.setdefault(f"{label} → {response.status_code}: {str(exc).splitlines()[2:3]}", str(exc))
            if label == "POST /training/start" and response.status_code == 202:
                run_id = response.json()["run_id"]
                started.append(run_id)
                client.post(f"/training/{run_id}/stop")

        check()

    try:
        total = sum(calls.values())
        assert not failures, f"seed {SEED} (FLOWERBED_FUZZ_SEED={SEED} replays it):\n" + "\n\n".join(
            f"{kind}\n{example}" for kind, example in list(failures.items())[:10]
        )
        assert total >= MIN_TOTAL_EXAMPLES, calls
    finally:
        for run_id in started:
            client.post(f"/training/{run_id}/stop")
        if started:
            wait_for(
                lambda: all(client.get(f"/training/{r}").json()["status"] in ("stopped", "failed", "completed") for r in started),
                300,
                "the fuzzed runs to stop",
                interval=2,
            )
        client.close()
    print(f"schemathesis (seed {SEED}): {total} cases over {len(calls)} operations, {len(started)} runs started and stopped")
