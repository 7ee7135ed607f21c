"""`python -m compose_harness up|down` (what `make compose-up` / `make compose-down` run).

`up` starts the engine if needed, builds the stand-ins and our images, boots compose.yaml (plus
the TLS overlay with `--tls`) and prints the `Dashboard:` and `API token:` lines; `down` removes
every container and network of that project, and its volumes only with `--volumes`.
"""

from __future__ import annotations

import argparse
import sys

from compose_harness import engine, standins
from compose_harness.stack import ROOT, ComposeStack

PROJECT = "flowerbed-harness"
WORKDIR = ROOT / ".flowerbed" / "compose"


# The documented default host ports (docs/deploy.md), bound to 127.0.0.1.
PORTS = {"FLOWERBED_API_PORT": 8080, "FLOWERBED_WEB_PORT": 8081, "FLOWERBED_FLEET_PORT": 9443}


def stack(tls: bool) -> ComposeStack:
    return ComposeStack(project=PROJECT, workdir=WORKDIR, tls=tls, ports=dict(PORTS))


def up(tls: bool) -> int:
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"engine: {engine.ensure_engine(ROOT / '.flowerbed')}; compose plugin: {engine.ensure_compose_plugin()}")
    standins.build_standins(log)
    s = stack(tls)
    env = s.write_env()
    log(f"building our images (project {PROJECT}) …")
    s.build(log)
    log("docker compose up -d --wait …")
    seconds = s.up()
    log(f"all services healthy after {seconds:.0f}s")
    print(f"Dashboard: {s.login_link()}")
    print(f"API token: {env['FLOWERBED_API_TOKEN']}   (also in {s.env_file.relative_to(ROOT)})")
    return 0


def down(volumes: bool) -> int:
    if not engine.engine_answers():
        print("no Docker engine answers: nothing to stop")
        return 0
    s = stack(tls=True)  # the overlay's files too, so its containers and volumes are known either way
    if not s.env_file.is_file():
        print(f"no stack of the harness ({s.env_file} missing): nothing to stop")
        return 0
    s.down(volumes=volumes)
    print(f"removed the containers and networks of {PROJECT}" + (" and its volumes" if volumes else " (volumes kept)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compose_harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="boot the stack on stand-in bases")
    p_up.add_argument("--tls", action="store_true", help="with the TLS overlay (compose.tls.yaml)")
    p_down = sub.add_parser("down", help="remove its containers and networks")
    p_down.add_argument("--volumes", action="store_true", help="and its volumes")
    args = parser.parse_args(argv)
    try:
        return up(args.tls) if args.command == "up" else down(args.volumes)
    except (engine.EngineUnavailable, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
