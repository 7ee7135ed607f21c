"""Property-based fuzzing of the whole OpenAPI schema against a real backend: no 5xx, ever.

Positive and negative cases for every operation, with a valid token (the 401 paths
are covered in test_api_validation). Valid POST /training/start cases really start
Flower runs; each is stopped at once through the API, and all are stopped at the end,
so the shared federation is left idle.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from backend_fixture import Backend, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.federation

EXAMPLES_PER_OPERATION = 60
MIN_TOTAL_EXAMPLES = 500


def test_no_server_errors_anywhere(backend: Backend) -> None:
    schema = schemathesis.openapi.from_url(f"{backend.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {backend.token}"}
    client = httpx.Client(base_url=backend.base_url, headers=headers, timeout=60)
    calls: dict[str, int] = {}
    failures: list[str] = []
    started: list[str] = []

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            label = case.operation.label
            response = case.call(base_url=backend.base_url, headers=headers, timeout=60)
            calls[label] = calls.get(label, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{label} → {response.status_code}: {case.as_curl_command(headers)}\n{response.text[:500]}")
            if label == "POST /training/start" and response.status_code == 202:
                run_id = response.json()["run_id"]
                started.append(run_id)
                client.post(f"/training/{run_id}/stop")

        check()

    try:
        total = sum(calls.values())
        assert not failures, "\n".join(failures[:10])
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
    print(f"schemathesis: {total} cases over {len(calls)} operations, {len(started)} runs started and stopped")
