"""Round time with tracing on vs off, same machine, same run, interleaved.

Two identical local federations: one whose processes export OTLP (every optimizer
step a span) to a sink in this process, one with tracing off. Runs alternate
between them so machine noise hits both alike. Two figures per side: each client's
local training time (where a span per optimizer step is made) and the round cadence
(time between consecutive `round_started` events: the whole client phase including
the span flush before each reply, aggregation and the server's own spans).
Goal: ≤ 3% overhead.

    .venv/bin/python bench/tracing_overhead.py [--pairs 3] [--rounds 4] [--examples 2000] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _harness import emit, federation, ours_config, run

from flowerbed.paths import app_dir


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and counts them; decoding is not what we measure."""

    received = 0

    def do_POST(self) -> None:
        type(self).received += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _measure(fed, rounds: int, examples: int) -> tuple[list[float], list[float]]:
    """(round cadences, client training seconds) of one run."""
    config = ours_config(fed, **{"num-server-rounds": rounds, "max-train-examples": examples, "min-nodes": 2})
    events, _, status = run(fed, app_dir(), config)
    assert status == "finished:completed", (status, events[-1:])
    starts = [e["ts"] for e in events if e["event"] == "round_started"]
    cadence = [b - a for a, b in itertools.pairwise(starts)]
    training = [c["train_seconds"] for e in events if e["event"] == "round_finished" for c in e["clients"]]
    return cadence, training


def in_process_training(repeat: int, examples: int) -> tuple[float, float, int]:
    """(seconds off, seconds on, spans) for the same local training, best of `repeat`, interleaved.

    What a ClientApp does with tracing on: an epoch span and a span per optimizer step,
    exported by the real OTLP exporter (to the sink), flushed at the end. Runs after the
    federations, in this process, configured by the same OTEL_* variables.
    """
    from flowerbed_app.client_app import step_scope
    from flowerbed_app.runtime import telemetry
    from flowerbed_app.task.networks import create_model
    from flowerbed_app.task.partition_cache import PartitionSpec, load_partition
    from flowerbed_app.task.training import train

    telemetry.setup("flowerbed-bench")
    part = load_partition(PartitionSpec("/usr/share/datasets/fashion-mnist", "iid", 3, 0, 0.5, 42, 0.1))
    x, y = part.x_train[:examples], part.y_train[:examples]

    def once(traced: bool) -> float:
        model = create_model("cnn")
        started = time.perf_counter()
        train(
            model,
            x,
            y,
            learning_rate=0.01,
            momentum=0.9,
            epochs=1,
            batch_size=32,
            seed=0,
            epoch_scope=(lambda epoch: telemetry.span("train.epoch", epoch=epoch)) if traced else None,
            step_scope=step_scope(1) if traced else None,
        )
        if traced:
            telemetry.flush()
        return time.perf_counter() - started

    once(False)  # warm-up
    off, on = [], []
    for _ in range(repeat):
        off.append(once(False))
        on.append(once(True))
    return min(off), min(on), math.ceil(examples / 32) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description="tracing overhead")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7, help="in-process training repetitions per side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    off: tuple[list[float], list[float]] = ([], [])
    on: tuple[list[float], list[float]] = ([], [])
    with federation(args.nodes) as plain, federation(args.nodes, extra_env=otel) as traced:
        for _ in range(args.pairs):
            for fed, into in ((plain, off), (traced, on)):
                cadence, training = _measure(fed, args.rounds, args.examples)
                into[0].extend(cadence)
                into[1].extend(training)
    for key, value in otel.items():
        os.environ[key] = value
    ip_off, ip_on, spans_per_training = in_process_training(args.repeat, args.examples)
    server.shutdown()
    assert _Sink.received > 0, "tracing was on but nothing was exported"
    m_off, m_on = statistics.median(off[0]), statistics.median(on[0])
    t_off, t_on = statistics.median(off[1]), statistics.median(on[1])
    emit(
        [
            ["tracing off", f"{m_off:.2f}", "1.000", f"{t_off:.3f}", "1.000"],
            ["tracing on (every step a span)", f"{m_on:.2f}", f"{m_on / m_off:.3f}", f"{t_on:.3f}", f"{t_on / t_off:.3f}"],
            ["in one process: training off / on", "", "", f"{ip_off:.3f} / {ip_on:.3f}", f"{ip_on / ip_off:.3f}"],
        ],
        ["variant", "s/round (median)", "ratio", "client training s (median)", "ratio"],
        {
            "rounds_off": off[0],
            "rounds_on": on[0],
            "median_off": m_off,
            "median_on": m_on,
            "overhead": round(m_on / m_off - 1, 4),
            "training_seconds_off": off[1],
            "training_seconds_on": on[1],
            "training_overhead": round(t_on / t_off - 1, 4),
            "in_process_seconds_off": ip_off,
            "in_process_seconds_on": ip_on,
            "in_process_overhead": round(ip_on / ip_off - 1, 4),
            "spans_per_training": spans_per_training,
            "exported_bytes": _Sink.received,
            "goal_overhead": 0.03,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
