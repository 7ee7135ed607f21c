"""Flower's simulation runtime: our app with N virtual clients in Ray, seconds per round.

Runs the Flower App real SuperNodes run (services/flowerapp: `flowerbed_app.server_app:app`
and `flowerbed_app.client_app:app`, the same FAB) in Flower's simulation runtime, the
way `flwr run APP local` does in Flower 1.41: a SuperLink started with `--simulation`
(its own port, FLWR_HOME and Ray temp dir, all in a scratch directory), and a run
started through the Control API with

- `override_config`: our run config (pyproject [tool.flwr.app.config] + overrides, as
  for any run), and
- `override_federation_config`: Flower's `SimulationConfig` — N virtual SuperNodes, the
  Ray backend, `--cpus` for Ray and `--client-cpus` per ClientApp (so cpus/client-cpus
  ClientApp actors run at once; each actor process keeps its imports between clients).

Flower gives virtual node i the node config partition-id=i, num-partitions=N, so every
client trains on its own 1/N of Fashion-MNIST (60 training examples at N=1,000).
`flwr.simulation.run_simulation` cannot take run-config overrides and is deprecated in
1.41; the SuperLink path above is the one `flwr run` uses.

Round timing comes from the ServerApp's progress events: a round is configure →
all selected clients trained → aggregated (`timeline.aggregated` of `round_finished`;
centralized evaluation runs beside the next round, as in every Flowerbed run). The
partition cache is filled before the run with the app's own partitioning code (not
timed as rounds), as it is after the first run at a given N.

    .venv/bin/python bench/simulation.py [--clients 1000] [--rounds 3] [--fraction-train 0.1] [--json]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import emit, free_port_block
from _simulation_processes import MemorySampler, our_processes, stop_everything

from flowerbed.flower_control import FlowerControl, build_fab
from flowerbed.paths import app_dir
from flowerbed.runs.run_follower import follow
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.task import partition_cache

MIB = 1024 * 1024
DATASET = RunSettings().dataset


# ---------------------------------------------------------------- the run


def warm_partition_cache(num_partitions: int, settings: RunSettings) -> float:
    """Build every client's partition with the app's own code (loading the IDX split
    once instead of once per partition); seconds taken, ~0 when already cached."""
    started = time.perf_counter()
    original = partition_cache.load_split
    partition_cache.load_split = functools.cache(original)
    try:
        for pid in range(num_partitions):
            partition_cache.load_partition(partition_cache.PartitionSpec.of(settings, pid, num_partitions))
    finally:
        partition_cache.load_split = original
    return time.perf_counter() - started


def simulation_env(scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "FLWR_HOME": str(scratch / "flwr-home"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",  # as our launcher sets it
        "FLOWERBED_CACHE_DIR": os.environ["FLOWERBED_CACHE_DIR"],
        "RAY_TMPDIR": str(scratch),  # Ray's session dir and sockets, not /tmp/ray
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }


def start_superlink(scratch: Path, port: int, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], FlowerControl]:
    log = open(scratch / "superlink.log", "ab")  # noqa: SIM115 - the process outlives this function
    proc = subprocess.Popen(
        [
            "flower-superlink",
            "--insecure",
            "--simulation",
            "--isolation",
            "subprocess",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=simulation_env(scratch),
        cwd=scratch,
        start_new_session=True,
    )
    log.close()
    control = FlowerControl(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            control.list_nodes()
            return proc, control
        except Exception as exc:  # connection refused until it listens
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_everything(proc, str(scratch))
                raise RuntimeError(f"simulation SuperLink did not start: {exc}; see {scratch / 'superlink.log'}") from exc
            time.sleep(0.2)


def start_simulation_run(control: FlowerControl, config: dict[str, Any], args: argparse.Namespace) -> int:
    from flwr.common.serde import fab_to_proto, user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest  # pylint: disable=no-name-in-module
    from flwr.proto.federation_config_pb2 import SimulationConfig  # pylint: disable=no-name-in-module
    from flwr.supercore.fab import Fab

    fab_bytes, fab_hash = build_fab(app_dir())
    request = StartRunRequest(
        fab=fab_to_proto(Fab(fab_hash, fab_bytes, {})),
        override_config=user_config_to_proto(config),
        override_federation_config=SimulationConfig(
            num_supernodes=args.clients,
            backend="ray",
            client_resources_num_cpus=args.client_cpus,
            client_resources_num_gpus=0.0,
            init_args_num_cpus=args.cpus,
            init_args_num_gpus=0,
        ),
    )
    response = control.client.StartRun(request)
    if not response.HasField("run_id"):
        raise RuntimeError("the SuperLink refused to start the simulation run")
    return int(response.run_id)


def round_summary(event: dict[str, Any], actors: int) -> dict[str, Any]:
    """One `round_finished` event: time, clients, and where the actors' time went."""
    clients = event["clients"]
    seconds = event["timeline"]["aggregated"]  # configure → selected clients trained → aggregated
    in_app = [c["t_reply"] - c["t_handler_start"] for c in clients]  # inside our ClientApp
    return {
        "round": event["round"],
        "seconds": seconds,
        "clients_trained": len(clients),
        "failures": len(event["failures"]),
        "accuracy": round(event["accuracy"], 4),
        "examples_per_client_median": statistics.median(c["num_examples"] for c in clients),
        "client_train_seconds_median": round(statistics.median(c["train_seconds"] for c in clients), 3),
        "client_app_seconds_median": round(statistics.median(in_app), 3),
        # Actor time per client outside our ClientApp: Ray dispatch, message (de)serialization,
        # Flower's per-message work, and actors waiting for the next message.
        "outside_app_seconds_per_client": round((seconds * actors - sum(in_app)) / len(clients), 3),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {
        "flowerbed-run-id": "bench-sim-" + uuid.uuid4().hex[:8],
        "num-server-rounds": args.rounds,
        "fraction-train": args.fraction_train,
        "fraction-evaluate": args.fraction_train,
        "min-nodes": 1,
        "min-available-nodes": args.clients,
        "max-train-examples": args.max_train_examples,
        "node-wait-timeout": 300.0,
    }
    settings = RunSettings.from_run_config(config)
    # Flower's FedAvg: int(available × fraction-train), at least min-nodes.
    expected = max(int(args.clients * args.fraction_train), settings.min_nodes)
    warm_seconds = warm_partition_cache(args.clients, settings) if args.warm_cache else None

    scratch = Path(tempfile.mkdtemp(prefix="fbsim-"))  # short: Ray's socket paths must stay < 108 chars
    config["model-store"] = str(scratch / "models")
    events: list[dict[str, Any]] = []
    log: list[str] = []
    started = time.perf_counter()
    proc, control = start_superlink(scratch, free_port_block(1))
    superlink_seconds = time.perf_counter() - started
    killed: list[str] = []
    try:
        with MemorySampler(proc.pid, str(scratch)) as sampler:
            run_started = time.time()
            run_id = start_simulation_run(control, config, args)
            status = follow(control, run_id, events.append, on_log=log.append)
        follow_ended = time.time()
        wall = time.perf_counter() - started
    finally:
        killed = stop_everything(proc, str(scratch))
        leftover = our_processes(-1, str(scratch))
        superlink_log = (scratch / "superlink.log").read_text(errors="replace")
        shutil.rmtree(scratch, ignore_errors=True)
    if status != "finished:completed" or not any(e["event"] == "run_finished" for e in events):
        tail = "".join(log)[-4000:] or superlink_log[-4000:]
        sys.exit(f"simulation run ended {status}:\n{tail}")

    starts = {e["round"]: e["ts"] for e in events if e["event"] == "round_started"}
    finished = [e for e in events if e["event"] == "round_finished"]
    actors = max(1, args.cpus // args.client_cpus)
    rounds = [round_summary(e, actors) for e in finished]
    cadence = [starts[r + 1] - starts[r] for r in sorted(starts) if r + 1 in starts]
    steady = [r["seconds"] for r in rounds[1:]] or [r["seconds"] for r in rounds]
    run_finished = next(e for e in events if e["event"] == "run_finished")
    last_round = max(starts)
    return {
        "clients": args.clients,
        "rounds_run": len(rounds),
        "fraction_train": args.fraction_train,
        "clients_per_round_expected": expected,
        "clients_trained_per_round": [r["clients_trained"] for r in rounds],
        "max_train_examples": args.max_train_examples,
        "ray": {"num_cpus": args.cpus, "client_num_cpus": args.client_cpus, "actors_seen": sampler.max_actors},
        "seconds_per_round": round(statistics.median(steady), 2),
        "first_round_seconds": rounds[0]["seconds"],
        "round_cadence_seconds": [round(c, 2) for c in cadence],
        # SuperLink up → run submitted → the ServerApp's first round starts (flwr-simulation
        # process, FAB install, Ray start, ServerApp start-up, test split).
        "startup_seconds": round(superlink_seconds + starts[min(starts)] - run_started, 2),
        "superlink_start_seconds": round(superlink_seconds, 2),
        # The last round's centralized evaluation and checkpoint, after its training.
        "last_round_finish_seconds": round(run_finished["ts"] - starts[last_round] - rounds[-1]["seconds"], 2),
        # ServerApp done → Flower reports the run finished (Ray shut down, flwr-simulation exits).
        "teardown_seconds": round(follow_ended - run_finished["ts"], 2),
        "wall_seconds": round(wall, 1),
        "partition_cache_warm_seconds": None if warm_seconds is None else round(warm_seconds, 1),
        "peak_pss_mib": round(sampler.peak_pss / MIB, 1),
        "peak_by_role": sampler.peak_by_role,
        "cpu_seconds_by_role": sampler.cpu_by_role(),
        # Processes still alive once the SuperLink had exited (ended by pid, SIGTERM first).
        "processes_stopped_after_superlink": killed,
        "processes_left": len(leftover),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower simulation runtime (Ray) with our app")
    parser.add_argument("--clients", type=int, default=1000, help="virtual SuperNodes (= partitions)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fraction-train", type=float, default=0.1, help="share of clients that train each round")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use")
    parser.add_argument("--client-cpus", type=int, default=1, help="CPUs per ClientApp (actors = cpus / client-cpus)")
    parser.add_argument("--max-train-examples", type=int, default=0, help="cap per client, smoke runs only (0: all)")
    parser.add_argument("--no-warm-cache", dest="warm_cache", action="store_false", help="let clients build partitions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # `timeout`, pytest-timeout, kill: unwind so that the finally clause stops the SuperLink and Ray.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if importlib.util.find_spec("ray") is None:
        sys.exit("Flower's simulation runtime needs Ray: .venv/bin/python -m pip install -r requirements-dev.txt")

    result = measure(args)
    table = [
        [
            r["round"],
            r["clients_trained"],
            r["failures"],
            r["seconds"],
            r["client_app_seconds_median"],
            r["outside_app_seconds_per_client"],
            r["accuracy"],
        ]
        for r in result["rounds"]
    ]
    print(
        f"{result['clients']} virtual clients, {result['clients_per_round_expected']} per round "
        f"(fraction-train {result['fraction_train']}), Ray on {args.cpus} CPUs: "
        f"{result['seconds_per_round']} s/round (median of rounds 2+), first round {result['first_round_seconds']} s, "
        f"start-up {result['startup_seconds']} s, wall {result['wall_seconds']} s, peak PSS {result['peak_pss_mib']} MiB"
    )
    if result["processes_left"]:
        print(f"WARNING: {result['processes_left']} processes of this run are still alive", file=sys.stderr)
    emit(
        table,
        ["round", "clients trained", "failures", "round s", "ClientApp s (median)", "other s per client", "accuracy"],
        result,
        args.json,
    )


if __name__ == "__main__":
    main()
