"""Seconds per round: Flowerbed's apps vs bare Flower, same machine, same run.

Baseline: a quickstart-style Flower App (FedAvg defaults: a train and a federated
evaluate phase per round, tiny MLP) on Flower's own programs (`flower-supernode`,
`flower-superexec`) and its default subprocess isolation.
Ours: the Flowerbed app with a tiny share of data (compute is not what we measure),
including what our rounds do that bare Flower's do not (centralized evaluation on
the 10k test split, a checkpoint), on our node programs (`flowerbed-supernode`,
`flowerbed-superexec`: warm ClientApps, waits that follow the work). `--flower-nodes`
adds our app on Flower's own node programs: what those programs change.
All on real SuperLink/SuperNode processes.

    .venv/bin/python bench/round_latency.py [--nodes 3] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics

from _harness import ROOT, emit, federation, ours_config, phase_timeline, run, summary

from flowerbed.local.topology import FLOWER_PROGRAMS
from flowerbed.paths import app_dir

BARE_APP = ROOT / "bench" / "bare_flower_app"


def bare_rounds(num_nodes: int, rounds: int) -> list[float]:
    with federation(num_nodes, isolation="subprocess", programs=FLOWER_PROGRAMS) as fed:
        _, log, status = run(fed, BARE_APP, {"num-server-rounds": rounds})
    assert status == "finished:completed", status
    marks = {int(k): float(t) for k, t in re.findall(r"BARE_ROUND (\d+) ([\d.]+)", log)}
    return [marks[k] - marks[k - 1] for k in range(1, rounds + 1)]


def ours_rounds(
    num_nodes: int, rounds: int, isolation: str, programs: dict[str, str] | None = None
) -> tuple[list[float], dict[str, float]]:
    with federation(num_nodes, isolation=isolation, programs=programs) as fed:
        events, _, status = run(fed, app_dir(), ours_config(fed, **{"num-server-rounds": rounds, "max-train-examples": 64}))
    assert status == "finished:completed", (status, events[-1:])
    finished = [e for e in events if e["event"] == "round_finished"]
    started = next(e for e in events if e["event"] == "round_started")
    stamps = [started["ts"]] + [e["ts"] for e in finished]
    durations = [b - a for a, b in itertools.pairwise(stamps)]
    return durations, phase_timeline(finished[1:] or finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-subprocess", action="store_true", help="omit Flowerbed on subprocess isolation")
    parser.add_argument(
        "--flower-nodes", "--flower-waits", action="store_true", help="also our app on Flower's own SuperNode and SuperExec"
    )
    args = parser.parse_args()

    bare = bare_rounds(args.nodes, args.rounds)
    ours, timeline = ours_rounds(args.nodes, args.rounds, "process")
    ours_sub = ours if args.skip_subprocess else ours_rounds(args.nodes, args.rounds, "subprocess")[0]
    # Round 1 pays one-off costs (partition cache, first FAB install): compare steady rounds.
    # Mean, not median: a round's end is when its centralized evaluation is done, on a
    # worker thread overlapping the next rounds, so single gaps are bursty; the mean of
    # rounds 2+ is (last end - first end) / (rounds - 1), the cadence a user sees.
    steady = slice(1, None) if args.rounds > 1 else slice(None)
    b, o, s = (statistics.fmean(x[steady]) for x in (bare, ours, ours_sub))
    table = [
        ["bare Flower (FedAvg defaults, subprocess)", f"{b:.2f}", "1.00"],
        ["Flowerbed (process isolation)", f"{o:.2f}", f"{o / b:.2f}"],
        ["Flowerbed (subprocess isolation)", f"{s:.2f}", f"{s / b:.2f}"],
    ]
    flower_nodes, flower_timeline = (
        ours_rounds(args.nodes, args.rounds, "process", FLOWER_PROGRAMS) if args.flower_nodes else (None, {})
    )
    if flower_nodes:
        w = statistics.fmean(flower_nodes[steady])
        table.append(["Flowerbed app on Flower's SuperNode + SuperExec (process)", f"{w:.2f}", f"{w / b:.2f}"])
    print("timeline of a Flowerbed round (median s since round start):")
    for phase, offset in timeline.items():
        print(f"  {offset:7.2f}  {phase}")
    if flower_timeline:
        print("the same on Flower's own node programs:")
        for phase, offset in flower_timeline.items():
            print(f"  {offset:7.2f}  {phase}")
    emit(
        table,
        ["variant", "s/round (mean, rounds 2+)", "ratio vs bare"],
        {
            "nodes": args.nodes,
            "rounds": args.rounds,
            "bare": summary(bare),
            "ours_process": summary(ours),
            "ours_subprocess": summary(ours_sub),
            "ours_on_flower_nodes": summary(flower_nodes) if flower_nodes else None,
            "ours_on_flower_nodes_timeline": flower_timeline or None,
            "ratio_process": round(o / b, 3),
            "ratio_subprocess": round(s / b, 3),
            "ours_timeline": timeline,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
