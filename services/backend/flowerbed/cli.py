"""`flowerbed`: run a local federation with its backend, and train on it from the terminal.

`flowerbed train` is a client of the REST API like the dashboard: runs start through
the backend's one code path, so the CLI, the API and the dashboard cannot drift.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from flowerbed import backend_process, launcher
from flowerbed.paths import data_dir
from flowerbed.topology import Ports

TERMINAL = ("completed", "failed", "stopped")
# `--set` keys of the run config that the API names differently.
_API_NAMES = {"num-server-rounds": "num_rounds", "resume-from": "from_checkpoint"}
_RUN_CONFIG_NAMES = {"num_rounds": "num-server-rounds"}


def _add_federation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="number of SuperNodes (default 3)")
    parser.add_argument("--superlink-port", type=int, default=8000)
    parser.add_argument("--supernode-port", type=int, default=9094, help="first SuperNode's port; then +1 each")
    parser.add_argument("--data-dir", type=Path, default=None, help="local state (default ./.flowerbed)")


def _ports(args: argparse.Namespace) -> Ports:
    return Ports(superlink=args.superlink_port, supernode_base=args.supernode_port)


def _data_dir(args: argparse.Namespace) -> Path:
    return (args.data_dir or data_dir()).resolve()


def _token(directory: Path) -> str:
    from flowerbed.settings import Settings

    return Settings(data_dir=directory).api_token


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from flowerbed.api.main import create_app

    # SSE streams would otherwise hold a shutdown open until the run ends.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        return _fail("--nodes must be at least 1")
    directory = _data_dir(args)
    existing = launcher.Federation.load(directory)
    if existing and existing.alive():
        return _fail(f"a federation is already running from {directory} (pid {existing.owner_pid}); `flowerbed down` first")
    print(f"starting SuperLink and {args.nodes} SuperNodes (logs in {directory / 'logs'}) …", flush=True)
    token = _token(directory)
    tracing = backend_process.local_tracing_env(args.port, token) if args.tracing else {}
    federation = launcher.start(directory, args.nodes, _ports(args), extra_env=tracing)
    try:
        backend = backend_process.start_backend(federation, args.port, extra_env=tracing)
    except BaseException as exc:
        launcher.stop(federation)
        return _fail(f"the backend did not start: {exc}")
    print(f"federation ready: SuperLink 127.0.0.1:{args.superlink_port}, {args.nodes} SuperNodes online", flush=True)
    print(f"backend ready: {backend.url} (API docs {backend.url}/docs)", flush=True)
    print(f"Dashboard: {backend.url}/?token={token}", flush=True)
    print(f"API token: {token}   (also in {directory / 'api-token'})", flush=True)
    print(f"FLWR_HOME={directory / 'flwr-home'} flwr ls   # lists this federation's runs", flush=True)
    _wait_for_signal()
    print("stopping …", flush=True)
    launcher.stop(federation)
    (directory / backend_process.STATE_FILE).unlink(missing_ok=True)
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


def training_request(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /training/start body for the train flags (`--set` takes run-config keys)."""
    body: dict[str, Any] = {"num_rounds": args.rounds, "partitioner": args.partitioner, "model": args.model}
    if args.alpha is not None:
        body["alpha"] = args.alpha
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        body[_API_NAMES.get(key, key.replace("-", "_"))] = _parse_scalar(value)
    return body


def _parse_scalar(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def precheck(args: argparse.Namespace, body: dict[str, Any]) -> str | None:
    """Reject bad input before starting anything (a federation takes a minute to start).

    The same rules the backend applies: the app's RunSettings (its messages name the
    run-config key users typed with --set) and the API's TrainingConfig.
    """
    from pydantic import ValidationError

    from flowerbed.run_config import TrainingConfig
    from flowerbed_app.fashion_mnist import DatasetMissingError, check_source
    from flowerbed_app.run_settings import RunSettings, SettingsError

    run_config = {k: v for k, v in body.items() if k != "from_checkpoint"}
    run_config = {_RUN_CONFIG_NAMES.get(k, k.replace("_", "-")): v for k, v in run_config.items()}
    try:
        if args.nodes < 1:
            raise SettingsError("nodes", "must be at least 1")
        settings = RunSettings.from_run_config(run_config)
        if settings.min_available_nodes > args.nodes and not args.allow_waiting:
            raise SettingsError(
                "min-available-nodes", f"{settings.min_available_nodes} nodes required but --nodes is {args.nodes}"
            )
        check_source(settings.dataset)
    except (SettingsError, DatasetMissingError) as exc:
        return str(exc)
    try:
        TrainingConfig.model_validate(body)
    except ValidationError as exc:
        return _describe_422({"detail": exc.errors()})
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd_train(args: argparse.Namespace) -> int:
    directory = _data_dir(args)
    body = training_request(args)
    if (problem := precheck(args, body)) is not None:
        return _fail(problem, as_json=args.json)

    owned: launcher.Federation | None = None
    backend = backend_process.find_backend(directory)
    federation = launcher.Federation.load(directory)
    if backend is None:
        if federation is not None and federation.alive() and federation.num_nodes != args.nodes:
            return _fail(
                f"a federation with {federation.num_nodes} nodes is running; "
                f"use --nodes {federation.num_nodes} or `flowerbed down`",
                as_json=args.json,
            )
        if federation is None or not federation.alive():
            _info(f"starting a local federation with {args.nodes} SuperNodes …", args.json)
            federation = owned = launcher.start(directory, args.nodes, _ports(args))
        try:
            _token(directory)
            backend = started_backend = backend_process.start_backend(federation, _free_port())
        except BaseException:
            if owned is not None:
                launcher.stop(owned)
            raise
    else:
        started_backend = None
    try:
        return _train(backend.url, _token(directory), body, args)
    finally:
        if owned is not None:
            launcher.stop(owned)
        elif started_backend is not None and federation is not None:
            backend_process.stop_backend(federation, started_backend)


def _train(url: str, token: str, body: dict[str, Any], args: argparse.Namespace) -> int:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
    started = time.time()
    response = client.post("/training/start", json=body)
    if response.status_code == 422:
        return _fail(_describe_422(response.json()), as_json=args.json)
    if response.status_code != 202:
        return _fail(f"the backend refused the run ({response.status_code}): {response.text}", as_json=args.json)
    run = response.json()
    run_id = run["run_id"]
    _info(f"run {run_id} (Flower run {run['flower_run_id']}): {body['num_rounds']} rounds of {body['model']}", args.json)
    checkpoints: dict[str, str] = {}  # model id → path, in round order; pruned ones leave
    arrived: dict[int, float] = {}  # round → seconds since the run was started
    status = "pending"
    try:
        for kind, data in follow_events(client, run_id):
            if kind == "round_finished":
                arrived[int(data["round"])] = round(time.time() - started, 3)
                _progress(data, body["num_rounds"], args.json)
            elif kind == "checkpoint_saved":
                checkpoints[data["model_id"]] = data["path"]
                for model_id in data.get("pruned") or []:  # deleted by the run's keep-checkpoints policy
                    checkpoints.pop(model_id, None)
            elif kind == "waiting_for_nodes":
                _info(f"waiting for nodes ({data['connected']}/{data['needed']})", args.json)
            elif kind == "status":
                status = data["status"]
    except KeyboardInterrupt:
        client.post(f"/training/{run_id}/stop")
        _info("interrupted: asked the backend to stop the run", args.json)
        raise
    detail = client.get(f"/training/{run_id}").json()
    status = detail["status"]
    result = {
        "run_id": run_id,
        "flower_run_id": detail["flower_run_id"],
        "status": status,
        "accuracy": detail["accuracy"],
        "loss": detail["loss"],
        "rounds": [
            {
                "round": r["round"],
                "accuracy": r["accuracy"],
                "loss": r["loss"],
                "seconds": r["seconds"],
                "elapsed": arrived.get(r["round"]),
                "clients": r["clients"],
                "failures": r["failures"],
                "timeline": r["timeline"],
            }
            for r in detail["rounds"]
        ],
        "checkpoints": list(checkpoints.values()),
        "seconds": round(time.time() - started, 3),
        "error": detail["error"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{status}: final accuracy {result['accuracy']} in {result['seconds']:.1f}s")
        for path in checkpoints.values():
            print(f"  checkpoint {path}")
        if result["error"]:
            print(f"  reason: {result['error']}", file=sys.stderr)
    return 0 if status == "completed" else 1


def follow_events(client: httpx.Client, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, data) from the run's SSE stream until it ends; reconnects with Last-Event-ID."""
    last = 0
    while True:
        try:
            with client.stream(
                "GET", f"/training/{run_id}/events", headers={"Last-Event-ID": str(last)}, timeout=httpx.Timeout(60, read=60)
            ) as response:
                response.raise_for_status()
                kind, data, event_id = "message", "", None
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        if event_id is not None:
                            last = event_id
                        payload = json.loads(data)
                        yield kind, payload
                        if kind == "status" and payload.get("status") in TERMINAL:
                            return
                        kind, data, event_id = "message", "", None
            return
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ConnectError):
            time.sleep(1.0)  # backend restarting or a proxy cut the stream: resume after `last`


def _describe_422(body: dict[str, Any]) -> str:
    errors = body.get("detail")
    if not isinstance(errors, list):
        return str(errors)
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", []) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg')}")
    return "; ".join(parts)


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

    up = sub.add_parser("up", help="start a local federation and its backend; keep them running until Ctrl-C")
    _add_federation_args(up)
    up.add_argument("--port", type=int, default=8080, help="the backend's HTTP port (default 8080)")
    up.add_argument("--no-tracing", dest="tracing", action="store_false", help="don't export OpenTelemetry spans to the backend")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the local federation started by `flowerbed up`")
    down.add_argument("--data-dir", type=Path, default=None)
    down.set_defaults(func=cmd_down)

    serve = sub.add_parser("serve", help="run the REST API (configured by FLOWERBED_* environment variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="train on the local federation (starting one and its backend if needed)")
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
