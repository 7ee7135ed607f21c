"""`flowerbed`: run a local federation with its backend, and train on it from the terminal.

`flowerbed train` is a client of the REST API like the dashboard: runs start through
the backend's one code path, so the CLI, the API and the dashboard cannot drift.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from flowerbed import backend_process, launcher
from flowerbed.paths import data_dir
from flowerbed.topology import Ports
from flowerbed.train_client import add_setting_flags, fail, info, precheck, train, training_request


def _add_federation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", type=int, default=None, help="number of SuperNodes (default 3, or one per --node-data directory)"
    )
    parser.add_argument(
        "--node-data",
        type=Path,
        action="append",
        metavar="DIR",
        help="a SuperNode's own data directory (repeat: one per node) for runs with data_source=node",
    )
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
    from flowerbed.secret_policy import InsecureSecret
    from flowerbed.url_redaction import uvicorn_log_config

    try:
        app = create_app()
    except InsecureSecret as exc:
        return fail(str(exc))
    if args.host not in ("127.0.0.1", "localhost", "::1") and not app.state.settings.require_token_for_reads:
        print(
            f"warning: serving on {args.host} with reads open to anyone who reaches it (runs, logs, checkpoints); "
            "set FLOWERBED_REQUIRE_TOKEN_FOR_READS=true",
            file=sys.stderr,
            flush=True,
        )
    # SSE streams would otherwise hold a shutdown open until the run ends.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=uvicorn_log_config(),
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_check_secrets(args: argparse.Namespace) -> int:
    """Exit 1 naming every variable that fails the secret policy (compose runs it before the stack)."""
    from flowerbed.secret_policy import check_variables

    problems = check_variables(args.variables)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {', '.join(args.variables)}")
    return 1 if problems else 0


def _node_count(args: argparse.Namespace) -> str | None:
    """Settle --nodes against --node-data (one directory per node); an error message or None."""
    if args.node_data:
        if args.nodes is not None and args.nodes != len(args.node_data):
            return f"--nodes {args.nodes} but {len(args.node_data)} --node-data directories: give one directory per node"
        missing = [str(d) for d in args.node_data if not d.is_dir()]
        if missing:
            return f"--node-data: not a directory: {', '.join(missing)}"
        args.nodes = len(args.node_data)
    elif args.nodes is None:
        args.nodes = 3
    return None


def cmd_up(args: argparse.Namespace) -> int:
    if problem := _node_count(args):
        return fail(problem)
    if args.nodes < 1:
        return fail("--nodes must be at least 1")
    directory = _data_dir(args)
    existing = launcher.Federation.load(directory)
    if existing and existing.alive():
        return fail(f"a federation is already running from {directory} (pid {existing.owner_pid}); `flowerbed down` first")
    print(f"starting SuperLink and {args.nodes} SuperNodes (logs in {directory / 'logs'}) …", flush=True)
    token = _token(directory)
    tracing = backend_process.local_tracing_env(args.port, token) if args.tracing else {}
    federation = launcher.start(directory, args.nodes, _ports(args), extra_env=tracing, node_data=args.node_data)
    try:
        backend = backend_process.start_backend(federation, args.port, extra_env=tracing)
    except BaseException as exc:
        launcher.stop(federation)
        return fail(f"the backend did not start: {exc}")
    print(f"federation ready: SuperLink 127.0.0.1:{args.superlink_port}, {args.nodes} SuperNodes online", flush=True)
    print(f"backend ready: {backend.url} (API docs {backend.url}/docs)", flush=True)
    print(f"Dashboard: {backend_process.login_link(backend, token)}", flush=True)
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd_train(args: argparse.Namespace) -> int:
    if problem := _node_count(args):
        return fail(problem, as_json=args.json)
    directory = _data_dir(args)
    body = training_request(args)
    if (problem := precheck(args, body)) is not None:
        return fail(problem, as_json=args.json)

    owned: launcher.Federation | None = None
    backend = backend_process.find_backend(directory)
    federation = launcher.Federation.load(directory)
    if backend is None:
        if federation is not None and federation.alive() and federation.num_nodes != args.nodes:
            return fail(
                f"a federation with {federation.num_nodes} nodes is running; "
                f"use --nodes {federation.num_nodes} or `flowerbed down`",
                as_json=args.json,
            )
        if federation is None or not federation.alive():
            info(f"starting a local federation with {args.nodes} SuperNodes …", args.json)
            federation = owned = launcher.start(directory, args.nodes, _ports(args), node_data=args.node_data)
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
        return train(backend.url, _token(directory), body, args)
    finally:
        if owned is not None:
            launcher.stop(owned)
        elif started_backend is not None and federation is not None:
            backend_process.stop_backend(federation, started_backend)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from flowerbed.demo_data import write_demo_data

    if args.sites < 1 or args.images_per_site < 1:
        return fail("--sites and --images-per-site must be at least 1")
    written = write_demo_data(args.out, args.sites, args.images_per_site, args.seed)
    for kind, directories in written.items():
        print(f"{kind}: {' '.join(f'--node-data {d}' for d in directories)}")
    return 0


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

    check = sub.add_parser(
        "check-secrets", help="check that environment variables hold real secrets (exit 1 naming each one that does not)"
    )
    check.add_argument("variables", nargs="+", metavar="VAR", help="e.g. FLOWERBED_API_TOKEN POSTGRES_PASSWORD")
    check.set_defaults(func=cmd_check_secrets)

    demo = sub.add_parser("demo-data", help="write example site data: breast-cancer tables and Fashion-MNIST PNG folders")
    demo.add_argument("--sites", type=int, default=3, help="number of sites (default 3)")
    demo.add_argument("--out", type=Path, required=True, help="directory to write <kind>/site-N/ into")
    demo.add_argument("--images-per-site", type=int, default=300, help="Fashion-MNIST images per site (default 300)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo_data)

    train = sub.add_parser("train", help="train on the local federation (starting one and its backend if needed)")
    _add_federation_args(train)
    add_setting_flags(train)
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
