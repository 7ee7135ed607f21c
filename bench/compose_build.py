"""Compose images and boot: sizes, cold build, warm rebuild after a one-line app change, `up` → healthy.

    .venv/bin/python bench/compose_build.py [--cold]

--cold removes this harness's own stand-in images (`flowerbed-standin/*`, nothing else) and builds
our images with `--no-cache`, so both the Debian stand-ins and our layers are built from scratch;
without it, whatever the engine has cached is reused. The one-line change appends a comment to
services/flowerapp/flowerbed_app/__init__.py for the rebuild and restores the file afterwards.
Prints one JSON object (seconds, bytes, load average) and tears its stack down with its volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))

from compose_harness import engine, standins  # noqa: E402
from compose_harness.stack import IMAGE_PREFIX, IMAGE_TAG, ComposeStack, ensure_wheelhouse  # noqa: E402
from flowerbed.local.topology import free_port_block  # noqa: E402

APP_FILE = ROOT / "services/flowerapp/flowerbed_app/__init__.py"


def remove_standins() -> None:
    """Only images under the harness's prefix (stand-ins and our images built on them)."""
    refs = subprocess.run(["docker", "images", "-q", f"{standins.PREFIX}/*"], capture_output=True, text=True).stdout.split()
    if refs:
        subprocess.run(["docker", "rmi", "-f", *sorted(set(refs))], capture_output=True, timeout=600)


def sizes() -> dict[str, int]:
    out = {}
    for name in ("backend", "serverapp", "clientapp", "web"):
        ref = f"{IMAGE_PREFIX}/{name}:{IMAGE_TAG}"
        out[name] = int(
            subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True).stdout
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="remove our stand-ins first and build with --no-cache")
    args = parser.parse_args()
    engine.ensure_engine(ROOT / ".flowerbed")
    engine.ensure_compose_plugin()
    result: dict[str, object] = {"cold": args.cold, "load_before": os.getloadavg()}
    if args.cold:
        remove_standins()
    started = time.monotonic()
    standins.build_standins(log=lambda _m: None)
    result["standins_s"] = round(time.monotonic() - started, 1)
    with tempfile.TemporaryDirectory(prefix="flowerbed-bench-compose-") as tmp:
        ports = {v: free_port_block(1) for v in ("FLOWERBED_API_PORT", "FLOWERBED_WEB_PORT", "FLOWERBED_FLEET_PORT")}
        stack = ComposeStack(project=f"fbbench-{secrets.token_hex(3)}", workdir=Path(tmp), ports=ports)
        stack.write_env()
        try:
            ensure_wheelhouse(log=lambda _m: None)
            started = time.monotonic()
            stack.compose("build", *(["--no-cache"] if args.cold else []), timeout=3600)
            result["build_s"] = round(time.monotonic() - started, 1)
            original = APP_FILE.read_text()
            try:
                APP_FILE.write_text(original + f"# bench {secrets.token_hex(4)}\n")
                result["rebuild_after_one_line_s"] = round(stack.build(log=lambda _m: None), 1)
            finally:
                APP_FILE.write_text(original)
            result["image_bytes"] = sizes()
            result["up_to_healthy_s"] = round(stack.up(), 1)
        finally:
            stack.down(volumes=True)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
