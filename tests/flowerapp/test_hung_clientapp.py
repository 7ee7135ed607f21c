"""A ClientApp hung past its round's timeout is stopped or killed, and its node works again.

Flower stops waiting for a reply at round-timeout but leaves the ClientApp running, and
its SuperNode takes no other message until that process ends. Two real hangs, injected
inside the real handler by tests/support/fault_injection: one in Python (stopped at the deadline),
one deadlocked in C code holding the GIL (only faulthandler's watchdog can end it).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fault_injection.client_faults import fault_env, hung_pid
from federation_runs import node_ids, run_training, warm_caches
from process_census import alive

from flowerbed_app.runtime.handler_deadline import GRACE_SECONDS

# `make test` runs this module in the session beside the others (its own federations on free ports and tmp dirs).
pytestmark = [pytest.mark.federation, pytest.mark.alongside]

SMALL = {
    "max-train-examples": 300,
    "max-test-examples": 1000,
    "fraction-train": 1.0,
    "batch-size": 32,
    "min-nodes": 2,
    "min-available-nodes": 4,
}
# Long enough for the healthy nodes on a loaded 2-core machine (measured: load average 20 here).
ROUND_TIMEOUT = 60.0


def test_hung_clientapps_are_killed_recorded_and_their_nodes_work_again(start_federation, tmp_path):
    faults = tmp_path / "faults"
    # Compute slots off: a hung ClientApp holds its slot until it is killed, which on two
    # cores would stall the healthy nodes of this test too.
    env = {**fault_env({2: "hang-once", 3: "hang-in-c-once"}, faults), "FLOWERBED_COMPUTE_SLOTS": "0"}
    warm_caches(4, SMALL)
    federation = start_federation(4, extra_env=env)
    nodes = node_ids(federation)
    logs = {p.name: Path(p.log) for p in federation.processes}

    first = run_training(federation, {**SMALL, "num-server-rounds": 2, "round-timeout": ROUND_TIMEOUT})
    assert first.flower_status == "finished:completed", first.events[-3:]
    round_1, round_2 = first.of("round_finished")
    reasons = {f["node_id"]: f["reason"] for f in round_1["failures"]}
    assert set(reasons) == {nodes[2], nodes[3]}, reasons
    # The server stops waiting at round-timeout; the Python hang is stopped at the same moment,
    # so its own error reply may still arrive first.
    assert (
        reasons[nodes[2]] in (f"no reply before round-timeout ({ROUND_TIMEOUT:g} s)",)
        or "still running when its round timed out" in reasons[nodes[2]]
    ), reasons
    assert reasons[nodes[3]] == f"no reply before round-timeout ({ROUND_TIMEOUT:g} s)", reasons
    assert {c["partition_id"] for c in round_1["clients"]} == {0, 1}
    # The Python hang was stopped at its deadline: that node is back for the very next round.
    assert 2 in {c["partition_id"] for c in round_2["clients"]}, round_2

    pids = {fault: hung_pid(faults, fault, partition) for fault, partition in (("hang", 2), ("hang-in-c", 3))}
    assert all(pids.values()), pids
    deadline = time.monotonic() + ROUND_TIMEOUT + GRACE_SECONDS + 30
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(alive(pid) for pid in pids.values()), f"hung ClientApps still running: {pids}"
    assert "still running when its round timed out" in logs["superexec-clientapp-3"].read_text()
    # Deadlocked in C with the GIL held: ended by faulthandler's watchdog, which dumped its stack.
    c_log = logs["superexec-clientapp-4"].read_text()
    assert re.search(r"Timeout \(\d+:\d\d:\d\d[.\d]*\)!", c_log) and "_hang_in_c" in c_log, c_log[-3000:]

    # The next run gets every node, the one whose ClientApp was killed in C included.
    second = run_training(federation, {**SMALL, "num-server-rounds": 1, "min-nodes": 4, "round-timeout": 240.0})
    assert second.flower_status == "finished:completed", second.events[-3:]
    (only,) = second.of("round_finished")
    assert {c["partition_id"] for c in only["clients"]} == {0, 1, 2, 3} and not only["failures"]
