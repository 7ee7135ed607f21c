"""Round time with tracing on vs off, same machine, same run, interleaved.

Two identical local federations: one whose processes export OTLP (every optimizer
step a span) to a sink in this process, one with tracing off. Runs alternate
between them so machine noise hits both alike. Goal: ≤ 3% overhead.

    .venv/bin/python bench/tracing_overhead.py [--pairs 2] [--rounds 3] [--examples 2000] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import threading
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


def _round_seconds(fed, rounds: int, examples: int) -> list[float]:
    config = ours_config(fed, **{"num-server-rounds": rounds, "max-train-examples": examples, "min-nodes": 2})
    events, _, status = run(fed, app_dir(), config)
    assert status == "finished:completed", (status, events[-1:])
    return [e["seconds"] for e in events if e["event"] == "round_finished"]


def main() -> None:
    parser = argparse.ArgumentParser(description="tracing overhead")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    off: list[float] = []
    on: list[float] = []
    with federation(args.nodes) as plain, federation(args.nodes, extra_env=otel) as traced:
        for _ in range(args.pairs):
            off += _round_seconds(plain, args.rounds, args.examples)
            on += _round_seconds(traced, args.rounds, args.examples)
    server.shutdown()
    assert _Sink.received > 0, "tracing was on but nothing was exported"
    m_off, m_on = statistics.median(off), statistics.median(on)
    emit(
        [["tracing off", f"{m_off:.2f}", "1.000"], ["tracing on (every step a span)", f"{m_on:.2f}", f"{m_on / m_off:.3f}"]],
        ["variant", "s/round (median)", "ratio"],
        {
            "rounds_off": off,
            "rounds_on": on,
            "median_off": m_off,
            "median_on": m_on,
            "overhead": round(m_on / m_off - 1, 4),
            "exported_bytes": _Sink.received,
            "goal_overhead": 0.03,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
