"""One compose project of Flowerbed booted on stand-ins: its .env, build, `up --wait`, and teardown.

`ComposeStack` is what `make compose-up` and the compose tests share. A stack is a project name,
the repository's compose files (unchanged) plus the harness override, and an .env the harness
writes: strong random secrets, the stand-in image variables, the host ports. Later harnesses
(several sites, several networks) are several stacks with their own project names and files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from compose_harness import standins
from compose_harness.engine import run

ROOT = standins.ROOT
HERE = Path(__file__).resolve().parent
BASE = ROOT / "compose.yaml"
TLS = ROOT / "compose.tls.yaml"
OVERRIDE = HERE / "compose.standins.yaml"
OVERRIDE_TLS = HERE / "compose.standins.tls.yaml"
WHEELHOUSE = ROOT / ".wheelhouse"
LOCK = ROOT / "requirements.lock"
IMAGE_PREFIX = standins.PREFIX  # our images built on stand-ins are not the real ones either
IMAGE_TAG = "test"


def standin_env() -> dict[str, str]:
    """The compose variables that select stand-ins for every third-party image."""
    return {
        "FLOWERBED_IMAGE_PREFIX": IMAGE_PREFIX,
        "FLOWERBED_IMAGE_TAG": IMAGE_TAG,
        "FLOWERBED_POSTGRES_IMAGE": standins.image("postgres"),
        "FLOWERBED_PROMETHEUS_IMAGE": standins.image("prometheus"),
        "FLOWERBED_TEMPO_IMAGE": standins.image("otlp-sink"),
        "FLOWERBED_BUSYBOX_IMAGE": standins.image("busybox"),
        "FLOWERBED_NGINX_IMAGE": standins.image("nginx"),
        "FLOWERBED_STANDIN_PYTHON_IMAGE": standins.image("python"),
        "FLOWERBED_STANDIN_NODE_IMAGE": standins.image("node"),
        "FLOWERBED_STANDIN_DEBIAN_IMAGE": standins.image("debian"),
        # Executors ask their SuperNode for work every 0.5 s instead of compose's 0.1 s: a test
        # machine runs a whole stack on two cores, and idle polling is what it can spare.
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.5",
    }


NODES = 3  # supernode-1..3 in compose.yaml


def node_data_env(workdir: Path, nodes: int = NODES) -> dict[str, Path]:
    """An empty data directory per SuperNode under `workdir`, as FLOWERBED_NODE_DATA_<n> → path.

    compose.yaml bind-mounts each read-only into its node's ClientApp executor. Files written
    into these directories while the stack runs are seen at once; a directory removed and made
    anew is not (the mount keeps the old one), so fill them, never replace them."""
    dirs = {f"FLOWERBED_NODE_DATA_{n}": workdir / "node-data" / f"site-{n}" for n in range(1, nodes + 1)}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # the executor reads it as uid 10001
    return dirs


def secret_env() -> dict[str, str]:
    """Strong random secrets (43 characters, never the .env.example placeholders)."""
    return {
        "FLOWERBED_API_TOKEN": secrets.token_urlsafe(32),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(32),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(32),
    }


def ensure_wheelhouse(log=print) -> None:
    """The lock's wheels on the host (`pip download`), so image builds install offline and hash-checked."""
    stamp = WHEELHOUSE / ".lock-sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    log(f"wheelhouse: pip download -r {LOCK.name} → {WHEELHOUSE.relative_to(ROOT)}/")
    WHEELHOUSE.mkdir(exist_ok=True)
    run(
        [sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps", "-d", str(WHEELHOUSE), "-r", str(LOCK)],
        timeout=1800,
    )
    stamp.write_text(digest)


@dataclass
class ComposeStack:
    project: str
    workdir: Path
    tls: bool = False
    ports: dict[str, int] = field(default_factory=dict)  # e.g. FLOWERBED_WEB_PORT → 18081
    extra_env: dict[str, str] = field(default_factory=dict)
    # Another deployment than the central stack (e.g. deploy/remote-supernode): its files and directory.
    compose_files: list[Path] = field(default_factory=list)
    project_dir: Path = ROOT

    @property
    def files(self) -> list[Path]:
        if self.compose_files:
            return self.compose_files
        return [BASE, TLS, OVERRIDE, OVERRIDE_TLS] if self.tls else [BASE, OVERRIDE]

    @property
    def env_file(self) -> Path:
        return self.workdir / f"{self.project}.env"

    def write_env(self) -> dict[str, str]:
        """The project's .env: kept across down/up (same secrets), written once."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.env_file.is_file():
            env = dict(line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        else:
            env = secret_env()
        env |= standin_env() | {k: str(v) for k, v in self.ports.items()} | self.extra_env
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        self.env_file.chmod(0o600)
        return env

    @property
    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)

    def compose(self, *args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(self.project_dir),
            "--env-file",
            str(self.env_file),
        ]
        for f in self.files:
            cmd += ["-f", str(f)]
        return run([*cmd, *args], timeout=timeout, check=check, cwd=ROOT)

    def build(self, log=print) -> float:
        """Build our images on the stand-ins (engine layer cache); returns the seconds it took."""
        ensure_wheelhouse(log)
        started = time.monotonic()
        self.compose("build", timeout=3600)
        standins.prune_dangling()
        return time.monotonic() - started

    def up(self, timeout: int = 600, services: tuple[str, ...] = ()) -> float:
        """`up -d --wait`: every service running and healthy; returns the seconds it took."""
        started = time.monotonic()
        proc = self.compose("up", "-d", "--wait", "--wait-timeout", str(timeout), *services, timeout=timeout + 120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"`docker compose up --wait` failed for {self.project}:\n{proc.stderr[-4000:]}\n{self.diagnose()}")
        return time.monotonic() - started

    def down(self, volumes: bool = False) -> None:
        args = ["down", "--remove-orphans", "--timeout", "20"] + (["--volumes"] if volumes else [])
        # Twice if needed: on a busy host a first `down` was seen leaving stopped containers behind.
        for _ in range(2):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.compose(*args, timeout=600, check=False)
            if not self.compose("ps", "-a", "-q", timeout=120, check=False).stdout.strip():
                return

    def ps(self) -> list[dict]:
        """Every container of the project (`ps -a`), as compose's JSON objects."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def container(self, service: str) -> str:
        return self.compose("ps", "-a", "-q", service).stdout.split()[0]

    def inspect(self, service: str) -> dict:
        return json.loads(run(["docker", "inspect", self.container(service)]).stdout)[0]

    def exec(self, service: str, *cmd: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *cmd, timeout=timeout, check=check)

    def logs(self, *services: str, tail: int = 200) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout

    def volume(self, name: str) -> str:
        return f"{self.project}_{name}"

    def network(self) -> str:
        return f"{self.project}_default"

    def diagnose(self) -> str:
        """States and the last log lines of unhealthy or exited services, for error messages."""
        lines = []
        for c in self.ps():
            if c.get("Health") not in ("", "healthy") or c.get("State") != "running":
                lines.append(f"--- {c['Service']}: {c.get('State')} {c.get('Health', '')} {c.get('Status', '')}")
                lines.append(self.logs(c["Service"], tail=30))
        return "\n".join(lines)

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    def login_link(self) -> str:
        """The dashboard URL with a one-time login code (as `flowerbed up` prints it): the code
        sits in the fragment, which no request carries, and is worthless once used."""

        request = urllib.request.Request(
            self.url("FLOWERBED_WEB_PORT") + "/auth/login-codes",
            method="POST",
            headers={"Authorization": f"Bearer {self.env['FLOWERBED_API_TOKEN']}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            code = json.loads(response.read())["code"]
        return f"{self.url('FLOWERBED_WEB_PORT')}/#login={code}"
