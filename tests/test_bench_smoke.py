"""Every benchmark script runs end to end at tiny size and ends with its JSON line.

Performance targets live in the benchmarks (BENCHMARKS.md), never in tests: these
only prove the scripts work, so a benchmark cannot rot unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str, timeout: float = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1 if script != "round_latency.py" else -1 - _trailer(proc.stdout)])


def _trailer(stdout: str) -> int:
    """round_latency prints its timeline after the JSON line."""
    lines = stdout.strip().splitlines()
    return next(i for i, line in enumerate(reversed(lines)) if line.startswith("{"))


def test_cold_start_smoke():
    result = _run("cold_start.py", "--repeat", "1")
    assert result["stages"]["import torch"] > 0
    assert result["heavy_modules_loaded"] == []  # datasets & co. stay out of the hot path


def test_aggregation_smoke():
    result = _run("aggregation.py", "--clients", "2", "--model", "cnn", "--repeat", "1")
    assert result["fraction_of_copy"] > 0


@pytest.mark.federation
def test_time_to_accuracy_smoke():
    result = _run(
        "time_to_accuracy.py", "--nodes", "2", "--rounds", "1", "--max-train-examples", "100", "--baseline-seconds", "1"
    )
    assert len(result["rounds"]) == 1 and result["efficiency"] > 0


@pytest.mark.federation
def test_round_latency_smoke():
    result = _run("round_latency.py", "--nodes", "2", "--rounds", "1", "--skip-subprocess")
    assert result["bare"]["median"] > 0 and result["ours_process"]["median"] > 0


@pytest.mark.federation
def test_tracing_overhead_smoke():
    result = _run("tracing_overhead.py", "--nodes", "2", "--pairs", "1", "--rounds", "2", "--examples", "50", "--repeat", "1")
    assert result["in_process_seconds_on"] > 0 and result["spans_per_training"] == 3
    assert result["exported_bytes"] > 0 and result["median_off"] > 0 and len(result["training_seconds_on"]) == 4


def test_api_latency_smoke():
    result = _run("api_latency.py", "--seconds", "1", "--subscribers", "5")
    assert result["results"]["detail_c50"]["non_2xx"] == 0 and result["sse"]["count"] == 5


def test_predict_latency_smoke():
    result = _run("predict_latency.py", "--seconds", "1", "--connections", "5")
    assert result["results"]["predict_c5"]["non_2xx"] == 0 and result["results"]["predict_c5"]["rps"] > 0


@pytest.mark.federation
def test_scale_smoke():
    result = _run("scale.py", "--nodes", "2", "--clients", "2", "--rounds", "2", "--examples", "50", "--idle-seconds", "2")
    (size,) = result["sizes"]
    assert size["rss_mib_per_node"] > 50 and size["clients_per_round"] == 2 and size["round_seconds"] > 0
    assert size["idle_cpu_percent_of_one_core"] > 0
    assert result["estimated_max_nodes"] > 0


@pytest.mark.federation
def test_simulation_smoke():
    result = _run("simulation.py", "--clients", "10", "--rounds", "1", "--fraction-train", "0.3", "--max-train-examples", "20")
    assert result["seconds_per_round"] > 0 and result["startup_seconds"] > 0
    assert result["clients_per_round_expected"] == 3 and result["clients_trained_per_round"] == [3]
    assert result["processes_left"] == 0  # no raylet, gcs_server or Ray worker outlives the script


def test_client_throughput_smoke():
    result = _run("client_throughput.py", "--examples", "64", "--clients", "3", "--repeat", "1")
    assert set(result["layouts"]) == {
        "no limit, 1 thread each (Flower)",
        f"{result['cores']} slots x 1 thread (local mode)",
        f"1 slot x {result['cores']} threads",
    }
    assert all(layout["samples_per_second"]["median"] > 0 for layout in result["layouts"].values())


@pytest.mark.federation
def test_idle_cost_smoke():
    result = _run("idle_cost.py", "--nodes", "1", "--seconds", "3", "--settle", "2")
    assert result["by_role"]["superlink"]["processes"] == 1 and result["by_role"]["supernode"]["processes"] == 1
    assert result["percent_of_one_core"] > 0


@pytest.mark.federation
def test_first_batch_smoke():
    result = _run("first_batch.py", "--nodes", "1", "--rounds", "2", "--examples", "32")
    for executor in ("warm", "new"):
        assert result[executor]["samples"] == 1 and result[executor]["to_first_batch"]["median"] > 0


def test_fedavg_in_process_smoke():
    result = _run("fedavg_in_process.py", "--nodes", "2", "--rounds", "1", "--set", "max-train-examples=64")
    assert len(result["rounds"]) == 1 and 0 < result["final_accuracy"] <= 1


@pytest.mark.federation
def test_node_data_smoke():
    result = _run("node_data.py", "--sites", "2", "--rounds", "1", "--local-epochs", "1")
    assert result["status"] == "finished:completed" and len(result["federated_accuracy_by_round"]) == 1
    assert 0 < result["centralized_accuracy"] <= 1 and len(result["site_sizes"]) == 2


def test_secure_aggregation_smoke():
    result = _run("secure_aggregation.py", "--nodes", "2", "--rounds", "1", "--once")
    assert result["secaggplus"]["seconds_per_round"] > 0 and result["fedavg"]["bytes_per_round"] > 0
