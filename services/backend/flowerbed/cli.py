"""`flowerbed`: run a local federation and train on it from the terminal."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flowerbed import launcher
from flowerbed.paths import app_dir, data_dir
from flowerbed.topology import Ports


def _add_federation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="number of SuperNodes (default 3)")
    parser.add_argument("--superlink-port", type=int, default=8000)
    parser.add_argument("--supernode-port", type=int, default=9094, help="first SuperNode's port; then +1 each")
    parser.add_argument("--data-dir", type=Path, default=None, help="local state (default ./.flowerbed)")


def _ports(args: argparse.Namespace) -> Ports:
    return Ports(superlink=args.superlink_port, supernode_base=args.supernode_port)


def _data_dir(args: argparse.Namespace) -> Path:
    return (args.data_dir or data_dir()).resolve()


def cmd_up(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        return _fail("--nodes must be at least 1")
    directory = _data_dir(args)
    existing = launcher.Federation.load(directory)
    if existing and existing.alive():
        return _fail(f"a federation is already running from {directory} (pid {existing.owner_pid}); `flowerbed down` first")
    print(f"starting SuperLink and {args.nodes} SuperNodes (logs in {directory / 'logs'}) …", flush=True)
    federation = launcher.start(directory, args.nodes, _ports(args))
    print(f"federation ready: SuperLink 127.0.0.1:{args.superlink_port}, {args.nodes} SuperNodes online", flush=True)
    print(f"FLWR_HOME={directory / 'flwr-home'} flwr ls   # lists this federation's runs", flush=True)
    _wait_for_signal()
    print("stopping …", flush=True)
    launcher.stop(federation)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    directory = _data_dir(args)
    federation = launcher.Federation.load(directory)
    if federation is None:
        print("no federation running")
        return 0
    launcher.stop(federation)
    print("stopped")
    return 0


def _wait_for_signal() -> None:
    stop = {"flag": False}

    def handler(signum: int, frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["flag"]:
        time.sleep(0.2)


def train_overrides(args: argparse.Namespace, run_id: str, directory: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "num-server-rounds": args.rounds,
        "partitioner": args.partitioner,
        "model": args.model,
        "flowerbed-run-id": run_id,
        "model-store": str(directory / "models"),
    }
    if args.alpha is not None:
        overrides["alpha"] = args.alpha
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        overrides[key] = _parse_scalar(value)
    return overrides


def _parse_scalar(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from flowerbed.run_follower import follow
    from flowerbed_app.fashion_mnist import DatasetMissingError, check_source
    from flowerbed_app.run_settings import RunSettings, SettingsError

    directory = _data_dir(args)
    run_id = uuid.uuid4().hex[:12]
    overrides = train_overrides(args, run_id, directory)
    try:
        if args.nodes < 1:
            raise SettingsError("nodes", "must be at least 1")
        settings = RunSettings.from_run_config(overrides)
        if settings.min_available_nodes > args.nodes and not args.allow_waiting:
            raise SettingsError(
                "min-available-nodes",
                f"{settings.min_available_nodes} nodes required but --nodes is {args.nodes}",
            )
        check_source(settings.dataset)
    except (SettingsError, DatasetMissingError) as exc:
        return _fail(str(exc), as_json=args.json)

    federation = launcher.Federation.load(directory)
    owned = None
    if federation is None or not federation.alive() or federation.num_nodes != args.nodes:
        if federation is not None and federation.alive():
            return _fail(
                f"a federation with {federation.num_nodes} nodes is running; "
                f"use --nodes {federation.num_nodes} or `flowerbed down`",
                as_json=args.json,
            )
        _info(f"starting a local federation with {args.nodes} SuperNodes …", args.json)
        federation = owned = launcher.start(directory, args.nodes, _ports(args))
    try:
        control = federation.control()
        started = time.time()
        flower_run_id = control.start_run(app_dir(), overrides)
        _info(
            f"run {run_id} (Flower run {flower_run_id}): {settings.num_server_rounds} rounds of {settings.model}",
            args.json,
        )
        rounds: list[dict[str, Any]] = []
        checkpoints: list[str] = []
        outcome: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> None:
            kind = event["event"]
            if kind == "round_finished":
                rounds.append(event)
                _progress(event, settings.num_server_rounds, args.json)
            elif kind == "checkpoint_saved":
                checkpoints.append(event["path"])
            elif kind == "waiting_for_nodes":
                _info(f"waiting for nodes ({event['connected']}/{event['needed']})", args.json)
            elif kind in ("run_finished", "run_failed"):
                outcome.update(event)

        flower_status = follow(control, flower_run_id, on_event)
        status = "completed" if outcome.get("event") == "run_finished" else "failed"
        if flower_status.endswith(":stopped"):
            status = "stopped"
        reason = outcome.get("reason") or ("" if status == "completed" else f"Flower reported {flower_status}")
        result = {
            "run_id": run_id,
            "flower_run_id": flower_run_id,
            "status": status,
            "accuracy": outcome.get("accuracy", rounds[-1]["accuracy"] if rounds else None),
            "loss": outcome.get("loss"),
            "rounds": [
                {
                    "round": r["round"],
                    "accuracy": r["accuracy"],
                    "loss": r["loss"],
                    "seconds": r["seconds"],
                    "clients": r["clients"],
                    "failures": r["failures"],
                    "timeline": r.get("timeline", {}),
                }
                for r in rounds
            ],
            "checkpoints": checkpoints,
            "seconds": round(time.time() - started, 3),
            "error": reason or None,
        }
    finally:
        if owned is not None:
            launcher.stop(owned)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{status}: final accuracy {result['accuracy']} in {result['seconds']:.1f}s")
        for path in checkpoints:
            print(f"  checkpoint {path}")
        if reason:
            print(f"  reason: {reason}", file=sys.stderr)
    return 0 if status == "completed" else 1


def _progress(event: dict[str, Any], total: int, as_json: bool) -> None:
    width = 20
    done = min(event["round"], total)
    bar = "█" * (width * done // total) + "·" * (width - width * done // total)
    failures = f", {len(event['failures'])} failed" if event["failures"] else ""
    _info(
        f"round {event['round']:>3}/{total} {bar} accuracy {event['accuracy']:.4f} "
        f"loss {event['loss']:.4f} ({event['seconds']:.1f}s, {len(event['clients'])} clients{failures})",
        as_json,
    )


def _info(message: str, as_json: bool) -> None:
    # With --json, stdout carries only the final JSON object; humans read stderr.
    print(message, file=sys.stderr if as_json else sys.stdout, flush=True)


def _fail(message: str, as_json: bool = False) -> int:
    if as_json:
        print(json.dumps({"status": "error", "error": message}))
    print(f"error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowerbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a local federation and keep it running until Ctrl-C")
    _add_federation_args(up)
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the local federation started by `flowerbed up`")
    down.add_argument("--data-dir", type=Path, default=None)
    down.set_defaults(func=cmd_down)

    train = sub.add_parser("train", help="train on the local federation (starting one if needed)")
    _add_federation_args(train)
    train.add_argument("--rounds", type=int, default=3)
    train.add_argument("--partitioner", default="iid", help="iid | dirichlet")
    train.add_argument("--alpha", type=float, default=None, help="Dirichlet concentration (> 0)")
    train.add_argument("--model", default="cnn", help="cnn | resnet18")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="any run-config key, e.g. --set local-epochs=2")
    train.add_argument("--allow-waiting", action="store_true", help="start even if fewer nodes than min-available-nodes")
    train.add_argument("--json", action="store_true", help="last stdout line: one JSON object with the results")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
