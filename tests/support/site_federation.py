"""A TLS SuperLink that admits only registered SuperNode keys, and sites' SuperNodes with their own keys, as
real processes (each in its own process group, leashed to the test): what the site-onboarding tests run the
platform against."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from backend_fixture import stop_group
from conftest import free_port

from flowerbed.flower_control import FlowerControl
from flowerbed.local.process_leash import leash
from flowerbed.local.topology import generate_certs

BIN = Path(sys.executable).parent
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def site_key(directory: Path, name: str, kind: tuple[str, ...] = ("-t", "ecdsa", "-b", "384")) -> Path:
    """A site's key pair as the docs tell a site to make it; returns the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"{name}.key"
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "", "-C", name, "-f", str(key)], check=True, timeout=60)
    return key


def ssh_fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


class Federation:
    def __init__(self, directory: Path) -> None:
        self.certs = generate_certs(directory / "certs")
        self.port = free_port()
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []
        self.superlink = self.spawn(
            "superlink",
            [str(BIN / "flower-superlink"), "--ssl-ca-certfile", str(self.certs / "ca.crt"),
             "--ssl-certfile", str(self.certs / "server.crt"), "--ssl-keyfile", str(self.certs / "server.key"),
             "--enable-supernode-auth", "--isolation", "process", "--database", str(directory / "state.db"),
             "--host", "127.0.0.1", "--port", str(self.port)],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                FlowerControl(f"https://127.0.0.1:{self.port}", ca_cert=self.certs / "ca.crt").list_nodes()
                break
            except Exception:
                assert self.superlink.poll() is None and time.monotonic() < deadline, self.log("superlink")[-2000:]
                time.sleep(0.5)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=leash(),
                env={
                    **os.environ,
                    **FLOWER_ENV,
                    "FLWR_HOME": str(self.directory / f"flwr-home-{name}"),
                    "PATH": f"{BIN}:{os.environ['PATH']}",  # executors start flwr-serverapp / flwr-clientapp by name
                },
            )
        self.procs.append(proc)
        return proc

    def supernode(self, name: str, key: Path) -> subprocess.Popen[bytes]:
        return self.spawn(
            name,
            [str(BIN / "flower-supernode"), "--root-certificates", str(self.certs / "ca.crt"),
             "--auth-supernode-private-key", str(key), "--superlink", f"127.0.0.1:{self.port}",
             "--isolation", "process", "--port", str(free_port()), "--node-config", "partition-id=0 num-partitions=1"],
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                stop_group(proc, grace=15)
