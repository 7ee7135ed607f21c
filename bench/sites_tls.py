"""Round time and bytes on the wire: three sites over TLS vs the same federation in plain HTTP.

Same machine, same benchmark run, the variants interleaved (pairs, the order alternating):
each run is a fresh local federation — real `flower-superlink`, three `flowerbed-supernode`s with
their executors, our app on a small share of Fashion-MNIST. TLS as compose.tls.yaml has it
(`launcher.start(tls=...)`): the SuperLink serves its one port with the certificate
deploy/tls/generate-certs.sh makes, SuperNodes and the ServerApp executor verify it against the CA
(node authentication is left out: it signs requests, it does not encrypt them).

The SuperNodes dial a byte-counting TCP relay in front of the SuperLink, so the bytes are what
crossed the sites' links (TLS records and handshakes included) during the run, divided by its
rounds: "up" node → SuperLink, "down" SuperLink → node, the three sites together.
Seconds per round: between consecutive `round_finished` events, round 1 left out (it carries
each node's first ClientApp start, which TLS does not change). The figure is the TLS/plain ratio.

    .venv/bin/python bench/sites_tls.py [--rounds 3] [--repeat 2] [--examples 256] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import emit, federation, free_ports, ours_config, run, summary

from flowerbed.local.topology import generate_certs
from flowerbed.paths import app_dir

NODES = 3


class CountingRelay:
    """127.0.0.1:port → the SuperLink's port, counting the bytes each way.

    By hand because it must count: a TCP proxy (nginx, socat) would hide the figure in its logs.
    It dials the SuperLink for each connection a SuperNode opens, waiting while the SuperLink
    starts: a connection closed mid-handshake is fatal for a TLS SuperNode (Flower's exit code 305),
    where a plain one just retries."""

    def __init__(self, target_port: int, connect_timeout: float = 30.0) -> None:
        self.target_port = target_port
        self.connect_timeout = connect_timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = self.down = self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    client.close()
                    return
                time.sleep(0.1)
        with self.lock:
            self.connections += 1
        threading.Thread(target=self._pipe, args=(client, server, "up"), daemon=True).start()
        self._pipe(server, client, "down")

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                with self.lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def reset(self) -> tuple[int, int, int]:
        """(up, down, connections) since the last reset."""
        with self.lock:
            counts = (self.up, self.down, self.connections)
            self.up = self.down = self.connections = 0
        return counts

    def close(self) -> None:
        self.listener.close()


def one_run(certs: Path | None, rounds: int, examples: int) -> dict[str, float]:
    """A fresh federation (over TLS with `certs`), one run: s/round and bytes per round."""
    ports = free_ports(NODES)
    relay = CountingRelay(ports.superlink)
    try:
        with federation(NODES, ports=ports, fleet_address=f"127.0.0.1:{relay.port}", tls=certs) as fed:
            relay.reset()  # connecting and registering are not a round's traffic
            config = {
                "num-server-rounds": rounds,
                "max-train-examples": examples,
                "fraction-train": 1.0,
                "min-nodes": NODES,
                "min-available-nodes": NODES,
            }
            events, log, status = run(fed, app_dir(), ours_config(fed, **config))
            up, down, connections = relay.reset()
    finally:
        relay.close()
    if status != "finished:completed":
        raise RuntimeError(f"run ended {status}: {log[-2000:]}")
    finished = [e["ts"] for e in events if e["event"] == "round_finished"]
    durations = [b - a for a, b in itertools.pairwise(finished)]
    if len(finished) != rounds or not durations:
        raise RuntimeError(f"{len(finished)} rounds finished of {rounds} (at least 2 are needed)")
    return {
        "round_s": statistics.median(durations),
        "up_bytes": up / rounds,
        "down_bytes": down / rounds,
        "connections": connections / rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="per run (≥ 2: round 1 is left out)")
    parser.add_argument("--repeat", type=int, default=2, help="plain/TLS pairs, interleaved")
    parser.add_argument("--examples", type=int, default=256, help="max-train-examples per site")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, float]]] = {"plain": [], "tls": []}
    with tempfile.TemporaryDirectory(prefix="flowerbed-bench-tls-") as tmp:
        certs = generate_certs(Path(tmp) / "certs")
        for i in range(args.repeat):
            for name in ("plain", "tls") if i % 2 == 0 else ("tls", "plain"):
                results[name].append(one_run(certs if name == "tls" else None, args.rounds, args.examples))
    table, result = [], {}
    for name, runs in results.items():
        up = statistics.median(r["up_bytes"] for r in runs)
        down = statistics.median(r["down_bytes"] for r in runs)
        result[name] = {
            "round_s": summary([r["round_s"] for r in runs]),
            "up_bytes_per_round": round(up),
            "down_bytes_per_round": round(down),
            "connections_per_round": round(statistics.median(r["connections"] for r in runs), 2),
        }
        table.append([name, result[name]["round_s"]["median"], f"{up / 1e6:.3f}", f"{down / 1e6:.3f}"])
    plain, tls = result["plain"], result["tls"]
    ratio = tls["round_s"]["median"] / plain["round_s"]["median"]
    wire = sum(tls[k] for k in ("up_bytes_per_round", "down_bytes_per_round")) / sum(
        plain[k] for k in ("up_bytes_per_round", "down_bytes_per_round")
    )
    result["tls_over_plain"] = {"round_time": round(ratio, 3), "bytes": round(wire, 4)}
    load: dict[str, Any] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    result["load_average"] = load
    result["setup"] = {"nodes": NODES, "rounds": args.rounds, "repeat": args.repeat, "examples": args.examples}
    table.append(["TLS / plain", round(ratio, 3), f"bytes x{wire:.4f}", ""])
    emit(table, ["variant", "s/round (median)", "MB up/round", "MB down/round"], result, args.json)
    print(f"load average (1, 5, 15 min): before {load['before']}, after {load['after']}")


if __name__ == "__main__":
    main()
