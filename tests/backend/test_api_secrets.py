"""Secrets: the backend refuses weak ones at start-up, and `flowerbed check-secrets` applies the same policy.

Processes that must refuse to start are started and watched exiting; no federation needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from backend_fixture import new_token
from conftest import free_port


def _serve_refuses(env: dict[str, str], tmp_path: Path) -> str:
    """Start `flowerbed serve` with this env; it must exit non-zero before listening. Returns its output."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWERBED_")}
    proc_env.update({"FLOWERBED_DATA_DIR": str(tmp_path), "FLOWERBED_SUPERLINK_URL": "127.0.0.1:9", **env})
    result = subprocess.run(
        [sys.executable, "-m", "flowerbed.cli", "serve", "--port", str(free_port())],
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Uvicorn running" not in result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("env", "named", "why"),
    [
        ({"FLOWERBED_API_TOKEN": "replace-with-openssl-rand-hex-32"}, "FLOWERBED_API_TOKEN", "placeholder"),
        ({"FLOWERBED_API_TOKEN": ""}, "FLOWERBED_API_TOKEN", "is empty"),
        ({"FLOWERBED_API_TOKEN": "0123456789abcdef"}, "FLOWERBED_API_TOKEN", "too short (16 characters, at least 24"),
        ({"FLOWERBED_API_TOKEN": "a" * 40}, "FLOWERBED_API_TOKEN", "too repetitive"),
        (
            {
                "FLOWERBED_API_TOKEN": new_token(),
                "FLOWERBED_DATABASE_URL": "postgresql+psycopg://fb:replace-with-a-strong-password@db/fb",
            },
            "FLOWERBED_DATABASE_URL",
            "password that is still a placeholder",
        ),
        (
            {"FLOWERBED_API_TOKEN": new_token(), "FLOWERBED_DATABASE_URL": "postgresql+psycopg://fb:hunter2@db/fb"},
            "FLOWERBED_DATABASE_URL",
            "password that is too short",
        ),
    ],
    ids=["placeholder-token", "empty-token", "short-token", "repetitive-token", "placeholder-db-password", "short-db-password"],
)
def test_the_backend_refuses_to_start_with_a_weak_secret(env: dict[str, str], named: str, why: str, tmp_path: Path) -> None:
    output = _serve_refuses(env, tmp_path)
    assert f"{named} {why}" in output or (named in output and why in output), output
    assert "openssl rand -hex 32" in output  # how to make a good one
    for secret in ("replace-with-openssl-rand-hex-32", "replace-with-a-strong-password", "0123456789abcdef", "hunter2", "a" * 40):
        assert secret not in output  # never echoed


def test_check_secrets_names_each_bad_variable(tmp_path: Path) -> None:
    """`flowerbed check-secrets VAR…`: compose's preflight; the same policy, exit 1 naming each bad one."""
    good = new_token()
    env = {
        **os.environ,
        "FLOWERBED_API_TOKEN": good,
        "POSTGRES_PASSWORD": "replace-with-a-strong-password",
        "GRAFANA_ADMIN_PASSWORD": "admin",
        "FLOWERBED_DATABASE_URL": f"postgresql+psycopg://u:{good}@db/x",
    }
    env.pop("UNSET_SECRET", None)
    command = [sys.executable, "-m", "flowerbed.cli", "check-secrets"]
    bad = subprocess.run(
        [*command, "FLOWERBED_API_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "UNSET_SECRET"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split()[1] for e in errors] == ["POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "UNSET_SECRET"], bad.stderr
    assert "placeholder" in errors[0] and "too short" in errors[1] and "not set" in errors[2]
    assert good not in bad.stdout + bad.stderr
    ok = subprocess.run(
        [*command, "FLOWERBED_API_TOKEN", "FLOWERBED_DATABASE_URL"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: FLOWERBED_API_TOKEN, FLOWERBED_DATABASE_URL"), ok.stderr
