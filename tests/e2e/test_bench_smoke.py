"""Every benchmark script runs end to end at tiny size and ends with its JSON line.

Performance targets live in the benchmarks (BENCHMARKS.md), never in tests: these
only prove the scripts work, so a benchmark cannot rot unnoticed.

The scripts start when the module does, a few at a time (`PARALLEL`), and each test
waits for its own: most of a tiny benchmark is a federation starting and Flower's
message round trips, which overlap well even on two cores. Nothing here is timed,
and each script finds its own free ports, so running them side by side changes no
assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARALLEL = 3
# A test's wait includes the scripts queued before its own (the first test in the file waits for most of the
# pool: 673 s at load 24 in one full run), so the per-test limit is the whole module's, not pyproject's 900 s.
pytestmark = [pytest.mark.timeout(1800), pytest.mark.bench_smoke]

# Each test's script and tiny-size arguments, the slowest first (they start first).
SMOKES: dict[str, tuple[str, ...]] = {
    "sites_tls": ("sites_tls.py", "--rounds", "2", "--repeat", "1", "--examples", "16"),
    "tracing_overhead": (
        "tracing_overhead.py",
        "--nodes",
        "2",
        "--pairs",
        "1",
        "--rounds",
        "2",
        "--examples",
        "50",
        "--repeat",
        "1",
    ),
    "first_batch": ("first_batch.py", "--nodes", "1", "--rounds", "2", "--examples", "32"),
    "secure_aggregation": ("secure_aggregation.py", "--nodes", "2", "--rounds", "1", "--once"),
    "round_latency": ("round_latency.py", "--nodes", "2", "--rounds", "1", "--skip-subprocess"),
    "time_to_accuracy": (
        "time_to_accuracy.py",
        "--nodes",
        "2",
        "--rounds",
        "1",
        "--max-train-examples",
        "100",
        "--baseline-seconds",
        "1",
    ),
    "scale": ("scale.py", "--nodes", "2", "--clients", "2", "--rounds", "2", "--examples", "50", "--idle-seconds", "2"),
    "node_data": ("node_data.py", "--sites", "2", "--rounds", "1", "--local-epochs", "1"),
    "simulation": (
        "simulation.py",
        "--clients",
        "10",
        "--rounds",
        "1",
        "--fraction-train",
        "0.3",
        "--max-train-examples",
        "20",
    ),
    "idle_cost": ("idle_cost.py", "--nodes", "1", "--seconds", "3", "--settle", "2"),
    "fedavg_in_process": ("fedavg_in_process.py", "--nodes", "2", "--rounds", "1", "--set", "max-train-examples=64"),
    "compression": ("compression.py", "--nodes", "2", "--rounds", "1", "--max-train-examples", "64", "--schemes", "none,topk"),
    "client_throughput": ("client_throughput.py", "--examples", "64", "--clients", "3", "--repeat", "1"),
    "api_latency": ("api_latency.py", "--seconds", "1", "--subscribers", "5"),
    "predict_latency": ("predict_latency.py", "--seconds", "1", "--connections", "5"),
    "aggregation": ("aggregation.py", "--clients", "2", "--model", "cnn", "--repeat", "1"),
    "cold_start": ("cold_start.py", "--repeat", "1"),
}


def _run(script: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # round_latency prints its timeline after the JSON line: the last line that is one.
    return json.loads(next(line for line in reversed(proc.stdout.strip().splitlines()) if line.startswith("{")))


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Starts the selected tests' scripts (only those: `-k` runs one), returns each one's JSON line."""
    selected = {
        item.name.removeprefix("test_").removesuffix("_smoke") for item in request.session.items if item.module is request.module
    }
    pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="bench-smoke")
    runs: dict[str, Future[dict[str, Any]]] = {
        name: pool.submit(_run, *args) for name, args in SMOKES.items() if name in selected
    }
    try:
        yield lambda name: runs[name].result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_every_benchmark_script_has_its_smoke_test() -> None:
    scripts = {path.name for path in (ROOT / "bench").glob("*.py") if not path.name.startswith("_")}
    # compose_build.py builds the images: the compose tests do that already, on the same engine.
    assert scripts - {"compose_build.py"} == {args[0] for args in SMOKES.values()}
    tests = {name.removeprefix("test_").removesuffix("_smoke") for name in globals() if name.endswith("_smoke")}
    assert tests == set(SMOKES)


def test_cold_start_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("cold_start")
    assert result["stages"]["import torch"] > 0
    assert result["heavy_modules_loaded"] == []  # datasets & co. stay out of the hot path


def test_aggregation_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    assert bench("aggregation")["fraction_of_copy"] > 0


@pytest.mark.federation
def test_time_to_accuracy_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("time_to_accuracy")
    assert len(result["rounds"]) == 1 and result["efficiency"] > 0


@pytest.mark.federation
def test_round_latency_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("round_latency")
    assert result["bare"]["median"] > 0 and result["ours_process"]["median"] > 0


@pytest.mark.federation
def test_tracing_overhead_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("tracing_overhead")
    assert result["in_process_seconds_on"] > 0 and result["spans_per_training"] == 3
    assert result["exported_bytes"] > 0 and result["median_off"] > 0 and len(result["training_seconds_on"]) == 4


def test_api_latency_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("api_latency")
    assert result["results"]["detail_c50"]["non_2xx"] == 0 and result["sse"]["count"] == 5


def test_predict_latency_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("predict_latency")
    assert result["results"]["predict_c5"]["non_2xx"] == 0 and result["results"]["predict_c5"]["rps"] > 0


@pytest.mark.federation
def test_scale_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("scale")
    (size,) = result["sizes"]
    assert size["rss_mib_per_node"] > 50 and size["clients_per_round"] == 2 and size["round_seconds"] > 0
    assert size["idle_cpu_percent_of_one_core"] > 0
    assert result["estimated_max_nodes"] > 0


@pytest.mark.federation
def test_simulation_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("simulation")
    assert result["seconds_per_round"] > 0 and result["startup_seconds"] > 0
    assert result["clients_per_round_expected"] == 3 and result["clients_trained_per_round"] == [3]
    assert result["processes_left"] == 0  # no raylet, gcs_server or Ray worker outlives the script


def test_client_throughput_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("client_throughput")
    assert set(result["layouts"]) == {
        "no limit, 1 thread each (Flower)",
        f"{result['cores']} slots x 1 thread (local mode)",
        f"1 slot x {result['cores']} threads",
    }
    assert all(layout["samples_per_second"]["median"] > 0 for layout in result["layouts"].values())


@pytest.mark.federation
def test_idle_cost_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("idle_cost")
    assert result["by_role"]["superlink"]["processes"] == 1 and result["by_role"]["supernode"]["processes"] == 1
    assert result["percent_of_one_core"] > 0


@pytest.mark.federation
def test_first_batch_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("first_batch")
    for executor in ("warm", "new"):
        measured = result[executor]
        assert measured["samples"] == 1 and measured["created_to_received_median"] > 0
        assert 0 < measured["received_to_first_batch"]["median"] < measured["to_first_batch"]["median"]


def test_fedavg_in_process_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("fedavg_in_process")
    assert len(result["rounds"]) == 1 and 0 < result["final_accuracy"] <= 1


@pytest.mark.federation
def test_node_data_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("node_data")
    assert result["status"] == "finished:completed" and len(result["federated_accuracy_by_round"]) == 1
    assert 0 < result["centralized_accuracy"] <= 1 and len(result["site_sizes"]) == 2


@pytest.mark.federation
def test_compression_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    results = bench("compression")["results"]
    assert results["topk"]["ratio"] > 1 and results["none"]["accuracy_gap_pp"] == 0


@pytest.mark.federation
def test_sites_tls_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("sites_tls")
    for variant in ("plain", "tls"):
        assert result[variant]["round_s"]["median"] > 0 and result[variant]["connections_per_round"] > 0
        # Each of the 3 sites fetches and sends the model every round: megabytes each way, through the relay.
        assert result[variant]["up_bytes_per_round"] > 1e6 and result[variant]["down_bytes_per_round"] > 1e6
    assert result["tls_over_plain"]["round_time"] > 0 and result["tls_over_plain"]["bytes"] > 0
    assert len(result["load_average"]["before"]) == len(result["load_average"]["after"]) == 3
    assert result["setup"] == {"nodes": 3, "rounds": 2, "repeat": 1, "examples": 16}


def test_secure_aggregation_smoke(bench: Callable[[str], dict[str, Any]]) -> None:
    result = bench("secure_aggregation")
    assert result["secaggplus"]["seconds_per_round"] > 0 and result["fedavg"]["bytes_per_round"] > 0
