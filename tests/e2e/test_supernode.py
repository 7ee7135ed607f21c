"""flowerbed-supernode: a run stopped while a node receives its message must not hang the next run.

Flower 1.41's SuperNode, when the SuperLink refuses its confirmation of a message because
the run was stopped meanwhile, still starts that message's ClientApp; its late reply is
then paired with the next run's message and the next run's reply is never pushed
(flowerbed_node/supernode.py). A relay holds the node's confirmation until the run is
stopped, so the race happens on every run of this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_fixture import QUICK_RUN, start_run, wait_for
from conftest import free_port, free_ports
from fleet_proxy import FleetProxy

from flowerbed.local.topology import Ports

CONFIRM = "/v1/fleet/confirm-message-received"
ONE_NODE = {**QUICK_RUN, "min_nodes": 1, "min_available_nodes": 1}


# Both ClientApp executors: Flower's (a new process per task) and the warm one, whose
# parent must survive the refused reply of the stopped run's task and start the next.
@pytest.mark.parametrize("warm", ["0", "1"], ids=["flower-executor", "warm-executor"])
def test_a_run_stopped_while_a_node_receives_does_not_hang_the_next(
    start_federation: Any, backend_factory: Any, tmp_path: Path, warm: str
) -> None:
    superlink_port = free_port()
    with FleetProxy(superlink_port) as proxy:
        federation = start_federation(
            num_nodes=1,
            ports=Ports(superlink=superlink_port, supernode_base=free_ports(1)),
            fleet_address=proxy.address,
            extra_env={"FLOWERBED_SUPEREXEC_WARM": warm},
        )
        backend = backend_factory(tmp_path / "backend", federation.superlink_url)
        node_log = Path(next(p.log for p in federation.processes if p.role == "supernode"))
        with backend.client() as client:
            proxy.hold_next(CONFIRM)
            stopped = start_run(client, **ONE_NODE, num_rounds=3)["run_id"]
            assert proxy.held.wait(120), f"the node never confirmed a message; it asked for {proxy.paths}"
            assert client.post(f"/training/{stopped}/stop").status_code == 202
            wait_for(lambda: client.get(f"/training/{stopped}").json()["status"] == "stopped", 20, "the stop")
            proxy.release()  # the SuperLink now refuses the confirmation: the run is stopped
            wait_for(lambda: "is not in `RUNNING` status. Ignoring message" in node_log.read_text(), 30, "the race")

            # Round timeout well above what a round takes here (seconds), well below
            # how long this test waits: a hung reply shows as a timeout, not a slow pass.
            nxt = start_run(client, **ONE_NODE, num_rounds=1, round_timeout=600)["run_id"]
            detail = wait_for(
                lambda: (d := client.get(f"/training/{nxt}").json())["status"] not in ("pending", "running") and d,
                180,
                "the next run to finish (its node's reply was not pushed)",
            )
    assert detail["status"] == "completed", detail
    ((round_one,),) = [detail["rounds"]]
    assert round_one["round"] == 1
    assert len(round_one["clients"]) == 1, round_one


def test_the_fix_refuses_to_start_on_a_changed_flower_loop(monkeypatch: Any) -> None:
    """Running unpatched silently would bring the hang back: a changed Flower must stop the node."""
    from flwr.supernode import start_client_internal as flower_loop

    from flowerbed_node import supernode

    def changed(*, state: object, receive: object) -> int | None:
        return None

    monkeypatch.setattr(flower_loop, "_pull_and_store_message", changed)
    with pytest.raises(RuntimeError, match="Flower's SuperNode loop changed"):
        supernode.install()
    assert flower_loop._pull_and_store_message is changed


def test_poll_settings_are_read_and_checked(monkeypatch: Any) -> None:
    from flowerbed_node import supernode

    monkeypatch.setenv(supernode.POLL_ENV, "0.05")
    monkeypatch.setenv(supernode.IDLE_POLL_ENV, "4")
    pacer = supernode.pacer_from_env()
    assert (pacer.busy, pacer.idle) == (0.05, 4.0)
    monkeypatch.delenv(supernode.IDLE_POLL_ENV)
    assert supernode.pacer_from_env().idle == supernode.DEFAULT_IDLE_POLL  # Flower's 3 s
    for bad in ("fast", "0", "-1", "61"):
        monkeypatch.setenv(supernode.POLL_ENV, bad)
        with pytest.raises(ValueError, match=supernode.POLL_ENV):
            supernode.pacer_from_env()


def test_pacer_polls_fast_after_work_and_backs_off_when_idle(monkeypatch: Any) -> None:
    from flowerbed_node import pacing

    clock = [100.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    pacer = pacing.Pacer(busy=0.1, idle=1.0, linger=5.0)
    assert [pacer.next_wait() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]  # nothing has come in yet
    pacer.mark_busy()
    clock[0] += 4.9
    assert pacer.next_wait() == 0.1
    clock[0] += 0.2  # the linger is over
    assert [pacer.next_wait() for _ in range(4)] == [0.2, 0.4, 0.8, 1.0]


def test_the_runtime_api_holds_a_task_request_until_a_task_exists() -> None:
    """An executor's AcquireTask is answered when a task is created, not polled for."""
    import threading
    import time

    from flowerbed_node.supernode import StateChanges, _held

    class Answer:
        def __init__(self, task: bool) -> None:
            self.task = task

        def HasField(self, name: str) -> bool:  # protobuf's spelling
            return self.task

    tasks: list[int] = []
    changes = StateChanges()
    acquire = _held(lambda request, state: Answer(bool(tasks)), changes, hold=5.0)

    def create_task() -> None:
        time.sleep(0.3)
        tasks.append(1)
        changes.notify()

    threading.Thread(target=create_task).start()
    started = time.monotonic()
    assert acquire(None, None).task
    assert 0.25 < time.monotonic() - started < 2.0  # answered when the task came, not at the hold's end
    tasks.clear()
    quick = _held(lambda request, state: Answer(False), changes, hold=0.3)
    started = time.monotonic()
    assert not quick(None, None).HasField("task") and time.monotonic() - started >= 0.3  # nothing: empty after the hold
    # While the node still receives a message (its task exists, its objects are not all in),
    # the task waits: a ClientApp started now would find the objects missing.
    tasks.append(1)
    changes.receiving = True

    def received() -> None:
        time.sleep(0.3)
        changes.receiving = False
        changes.notify()

    threading.Thread(target=received).start()
    started = time.monotonic()
    assert acquire(None, None).task and time.monotonic() - started >= 0.25
    tasks.clear()
    changes.close()
    started = time.monotonic()
    assert not acquire(None, None).HasField("task") and time.monotonic() - started < 1.0  # shutdown releases waiters


def test_object_pulls_back_off_from_50_ms_to_a_quarter_second_on_the_node_and_in_the_serverapp() -> None:
    """A message that arrives before its objects costs Flower a 1 s first back-off (seen: half
    the rounds of a 1-node federation 1 s longer), doubling to 10 s. Both pullers of ours start
    at 50 ms and double up to 0.25 s; the waits asked for are recorded, not timed. In a
    subprocess: the patches are process-wide."""
    code = """
import json, sys, threading
from flwr.superlink.grid import http_grid
from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError
from flwr.supernode import start_client_internal as node_loop
from flowerbed_app.strategy import fast_grid
from flowerbed_node import supernode

supernode.install()
assert fast_grid.quicken_object_pulls()
waits = []
real_wait = threading.Event.wait
def wait(self, timeout=None):
    if sys._getframe(1).f_code.co_name != "pull_with_retries":
        return real_wait(self, timeout)
    waits.append(timeout)
    return real_wait(self, 0)
threading.Event.wait = wait
for pull in (node_loop.pull_objects, http_grid.pull_objects):
    calls = []
    def pull_object(object_id):
        calls.append(object_id)
        if len(calls) < 8:
            raise ObjectUnavailableError(object_id)
        return b"content"
    assert pull(["object"], pull_object) == {"object": b"content"}
print(json.dumps(waits))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    waits = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(waits) == 14, waits  # seven retries per puller
    for puller in (waits[:7], waits[7:]):  # 50 ms, doubling to 250 ms, ±20 % jitter
        assert puller[0] <= 0.05 * 1.2 and puller[1] >= 0.1 * 0.8, puller
        assert all(0.25 * 0.8 <= wait <= 0.25 * 1.2 for wait in puller[3:]), puller
