"""flowerbed-superexec: ClientApp tasks forked from a warm parent, on real federations.

A task that raises, one that dies of a signal and one that hangs past its round's timeout
must each be that node's failure, and the same warm parent must serve the node's next
message; the parent must not grow over hundreds of tasks; and a model trained through
forked tasks must equal, bit for bit, the one Flower's own executor (a new process per
task) trains with the same seed. tests/support/fault_app is the Flower App that fails on request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from federation_runs import run_training
from test_algorithms_federation import SMALL, _completed, _final_weights

from flowerbed.local import launcher

# `make test` runs this module in the session beside the others (its own federations on free ports and tmp dirs).
pytestmark = pytest.mark.alongside

FAULT_APP = Path(__file__).resolve().parents[1] / "support" / "fault_app"
WARM = {"FLOWERBED_SUPEREXEC_WARM": "1"}  # the default (flowerbed_node.exec_loop.DEFAULT_WARM), said explicitly
WARM_FAULT_APP = {**WARM, "FLOWERBED_CLIENTAPP": "fault_app.client_app:app", "PYTHONPATH": str(FAULT_APP)}


def _executors(federation: launcher.Federation) -> dict[int, str]:
    return {p.pid: p.log for p in federation.processes if p.role == "superexec-clientapp"}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _fault_run(federation: launcher.Federation, results: Path, timeout: float, **config: Any) -> list[dict[str, Any]]:
    """Run tests/support/fault_app to its end; the ServerApp's per-round records."""
    control = federation.control()
    run_id = control.start_run(FAULT_APP, {"result-file": str(results), **config})
    deadline = time.monotonic() + timeout
    while (run := control.get_run(run_id)) is None or not run.status.startswith("finished"):
        assert time.monotonic() < deadline, f"the run did not finish in {timeout:.0f} s: {results.read_text()[-2000:]}"
        time.sleep(0.5)
    assert run.sub_status == "completed", (run.sub_status, results.read_text()[-2000:])
    return [json.loads(line) for line in results.read_text().splitlines()]


@pytest.mark.federation
def test_a_failing_task_is_its_nodes_failure_and_the_warm_parent_serves_the_next(start_federation: Any, tmp_path: Path) -> None:
    federation = start_federation(num_nodes=2, extra_env=WARM_FAULT_APP)
    executors = _executors(federation)
    rounds = _fault_run(
        federation,
        tmp_path / "rounds.jsonl",
        240,
        **{"num-server-rounds": 4, "faults": "1:raise,2:abort,3:hang", "round-timeout": 30.0},
    )
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    faulty = str(rounds[0]["faulty_node"])
    healthy = next(node for node in rounds[0]["replies"] if node != faulty)
    raised, aborted, hung, after = (r["replies"] for r in rounds)
    # The exception travels back as the node's error (Flower's runtime, in the forked task).
    assert "injected failure" in raised[faulty]["error"]
    # A task killed by a signal pushes nothing itself; its parent answers for it at once,
    # not after the task heartbeat's minute (the round waited far less than its timeout).
    assert "SIGABRT" in aborted[faulty]["error"]
    assert rounds[1]["seconds"] < 20, rounds[1]
    # A task still running at its message's deadline: no reply in time, round timed out.
    assert faulty not in hung or "error" in hung[faulty]
    assert rounds[2]["seconds"] >= 29, rounds[2]
    # ... and the node was freed for the next message, served by the same warm parent.
    for replies in (raised, aborted, hung, after):
        assert "pid" in replies[healthy], replies
    assert "pid" in after[faulty], after
    served = [reply for r in rounds for reply in r["replies"].values() if "pid" in reply]
    assert {reply["ppid"] for reply in served} <= set(executors), (served, executors)
    assert len({reply["pid"] for reply in served}) == len(served)  # a process per task
    assert all(launcher._pid_alive(pid) for pid in executors)  # the parents lived through it all
    logs = "".join(Path(log).read_text() for log in executors.values())
    assert "preloaded fault_app.client_app:app" in logs
    assert "killed" in logs and "died of SIGABRT" in logs


@pytest.mark.federation
def test_the_warm_parent_does_not_grow_over_200_messages(start_federation: Any, tmp_path: Path) -> None:
    federation = start_federation(num_nodes=1, extra_env=WARM_FAULT_APP)
    ((parent, _),) = _executors(federation).items()
    results = tmp_path / "rounds.jsonl"
    control = federation.control()
    run_id = control.start_run(FAULT_APP, {"result-file": str(results), "num-server-rounds": 200, "faults": ""})
    deadline = time.monotonic() + 900
    while not results.exists() or len(results.read_text().splitlines()) < 20:
        assert time.monotonic() < deadline, "20 rounds did not finish"
        time.sleep(0.2)
    warm = _rss_kib(parent)  # preloaded, and 20 tasks in: what the parent holds to serve
    while (run := control.get_run(run_id)) is None or not run.status.startswith("finished"):
        assert time.monotonic() < deadline, "200 rounds did not finish"
        time.sleep(0.5)
    after = _rss_kib(parent)
    rounds = [json.loads(line) for line in results.read_text().splitlines()]
    replies = [reply for r in rounds for reply in r["replies"].values()]
    assert len(replies) == 200 and all(reply.get("ppid") == parent for reply in replies), rounds[-1]
    assert len({reply["pid"] for reply in replies}) == 200
    assert after < warm * 1.05, f"parent RSS grew from {warm} KiB to {after} KiB over 180 tasks"


@pytest.mark.federation
def test_forked_tasks_train_the_same_model_as_flowers_executor(start_federation: Any) -> None:
    config = {**SMALL, "num-server-rounds": 2, "seed": 11}
    weights = {}
    for label, env in (("warm", WARM), ("flower", {"FLOWERBED_SUPEREXEC_WARM": "0"})):
        federation = start_federation(num_nodes=2, extra_env=env)
        outcome = run_training(federation, config)
        _completed(outcome)
        weights[label] = _final_weights(federation, outcome)
        logs = "".join(Path(log).read_text() for log in _executors(federation).values())
        assert ("forked from the warm executor" in logs) == (label == "warm"), label
        launcher.stop(federation)
    for name, value in weights["warm"].items():
        np.testing.assert_array_equal(value, weights["flower"][name], err_msg=name)


@pytest.mark.federation
def test_an_idle_warm_parent_restarts_cold_and_still_serves(start_federation: Any, tmp_path: Path) -> None:
    env = {**WARM_FAULT_APP, "FLOWERBED_SUPEREXEC_KEEP_WARM_SECONDS": "3"}
    federation = start_federation(num_nodes=1, extra_env=env)
    ((parent, log),) = _executors(federation).items()
    cold = _rss_kib(parent)
    _fault_run(federation, tmp_path / "first.jsonl", 120, **{"num-server-rounds": 1})
    deadline = time.monotonic() + 60
    while "restarting cold" not in Path(log).read_text():
        assert time.monotonic() < deadline, Path(log).read_text()[-2000:]
        time.sleep(0.5)
    time.sleep(3)  # the re-executed program starts up
    assert launcher._pid_alive(parent) and _rss_kib(parent) < cold * 1.2  # same process, torch gone
    (again,) = _fault_run(federation, tmp_path / "second.jsonl", 120, **{"num-server-rounds": 1})
    assert next(iter(again["replies"].values()))["ppid"] == parent


def test_preloading_starts_no_thread_and_imports_torch() -> None:
    """A process that forks must not hold thread pools a child would inherit half of."""
    probe = (
        "import os; os.environ['OPENBLAS_NUM_THREADS'] = '1'\n"
        "import sys\n"
        "from flwr.supercore.superexec.executor import SubprocessExecutor\n"
        "from flowerbed_node.fork_executor import ForkExecutor, thread_count\n"
        "before = thread_count()\n"
        "executor = ForkExecutor('flowerbed_app.client_app:app', 0, SubprocessExecutor())\n"
        "assert executor.warm_up()\n"
        "print(before, thread_count(), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["1", "1", "True"], out


def test_an_app_that_cannot_be_preloaded_goes_to_flowers_executor() -> None:
    from flwr.supercore.superexec.executor import SubprocessExecutor

    from flowerbed_node.fork_executor import ForkExecutor

    executor = ForkExecutor("no_such_app.client:app", 0, SubprocessExecutor())
    assert not executor.warm_up() and executor.preload_failed and executor.warm is None


def test_a_fab_with_other_code_is_imported_from_the_fab(tmp_path: Path) -> None:
    import shutil

    from flowerbed_node.warm_app import WarmApp, package_digest

    source = FAULT_APP / "fault_app"
    warm = WarmApp("fault_app.client_app:app", "fault_app", source, package_digest(source))
    shutil.copytree(source, tmp_path / "fault_app", ignore=shutil.ignore_patterns("__pycache__"))
    assert warm.matches(tmp_path)
    (tmp_path / "fault_app" / "client_app.py").write_text("app = None\n")
    assert not warm.matches(tmp_path)
    assert not warm.matches(tmp_path / "elsewhere")


def test_refuses_to_start_on_a_changed_flower(monkeypatch: Any) -> None:
    from flwr.supercore.superexec import run_superexec
    from flwr.supernode.runtime import run_clientapp

    from flowerbed_node import exec_loop, warm_app

    def run_clientapp_changed(runtime_api_address: str, token: str) -> None: ...

    monkeypatch.setattr(run_clientapp, "run_clientapp", run_clientapp_changed)
    with pytest.raises(RuntimeError, match="ClientApp runtime changed"):
        warm_app.check_flower()
    monkeypatch.undo()

    def get_executor_changed(executor_type: Any) -> None: ...

    monkeypatch.setattr(run_superexec, "get_executor", get_executor_changed)
    with pytest.raises(RuntimeError, match="Flower's SuperExec changed"):
        exec_loop.check_flower()
