"""The TLS overlay (compose.tls.yaml) booted for real: certificates, SuperNode auth, the fleet proxy.

One stack for the module: the key files' modes and owners inside their volumes; the backend following
a run over https with the CA; a remote SuperNode site (deploy/remote-supernode, a compose project of
its own on this network) registered and training through the fleet proxy; an unregistered key refused.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_fixture import Booted, booted_stack

from compose_harness import remote, standins
from compose_harness.engine import run
from compose_harness.stack import IMAGE_PREFIX, IMAGE_TAG

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]
FLOWER_IMAGE = f"{IMAGE_PREFIX}/clientapp:{IMAGE_TAG}"

# volume → {file: (mode, owner uid)}: each private key only in its consumer's volume.
KEY_FILES = {
    "certs": {"ca.key": ("600", 0), "server.key": ("600", 0)},
    "tls-superlink": {"server.key": ("600", 10001)},
    "tls-fleet-proxy": {"server.key": ("600", 0)},
    "tls-supernode-1": {"supernode.key": ("600", 10001)},
    "tls-supernode-2": {"supernode.key": ("600", 10001)},
    "tls-supernode-3": {"supernode.key": ("600", 10001)},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted_stack(tmp_path_factory.mktemp("compose-tls"), tls=True) as booted:
        yield booted


def stat_volume(stack: Booted, volume: str) -> dict[str, tuple[str, int]]:
    out = run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{stack.stack.volume(volume)}:/v:ro",
            standins.image("busybox"),
            "sh",
            "-c",
            "cd /v && stat -c '%n %a %u' *",
        ],
        timeout=120,
    ).stdout
    return {name: (mode, int(uid)) for name, mode, uid in (line.split() for line in out.splitlines())}


def test_key_files_are_0600_owned_by_their_one_reader(stack: Booted) -> None:
    for volume, files in KEY_FILES.items():
        found = stat_volume(stack, volume)
        for name, expected in files.items():
            assert found.get(name) == expected, f"{volume}/{name}: {found.get(name)}, expected {expected}"
        if volume != "certs":
            assert {n for n in found if n.endswith(".key")} == set(files), f"{volume} holds other keys: {found}"
    public = stat_volume(stack, "tls-public")
    assert not [n for n in public if n.endswith(".key")], f"a private key in the public volume: {public}"
    assert public["ca.crt"][0] == "644"
    # Which containers mount which volume: the CA's volume only the certificate job.
    for c in stack.stack.ps():
        sources = {m.get("Name") for m in stack.stack.inspect(c["Service"])["Mounts"]}
        if c["Service"] != "certs":
            assert stack.stack.volume("certs") not in sources, f"{c['Service']} mounts the CA key's volume"


def test_backend_follows_a_run_over_https_with_the_ca(stack: Booted) -> None:
    env = {e.split("=", 1)[0]: e.split("=", 1)[1] for e in stack.stack.inspect("backend")["Config"]["Env"]}
    assert env["FLOWERBED_SUPERLINK_URL"].startswith("https://") and env["FLOWERBED_SUPERLINK_CA_CERT"]
    assert "SSL_CERT_FILE" not in env, "the CA must come from the backend's own setting"
    ready = stack.json("GET", "/ready")
    assert ready["superlink"], ready
    run_id = stack.start_run(num_rounds=1)
    detail = stack.wait_finished(run_id)
    assert detail["status"] == "completed", detail
    assert len(detail["rounds"][0]["clients"]) == 3


def online_nodes(stack: Booted) -> int:
    return sum(1 for n in stack.json("GET", "/nodes")["items"] if n["status"] == "online")


def test_remote_site_through_the_fleet_proxy_and_an_unregistered_key_refused(stack: Booted, tmp_path: Path) -> None:
    ca = remote.central_file(stack.stack, "tls-public", "ca.crt")
    site_dir = tmp_path / "site-1" / "certs"
    pub = remote.make_site_keys(site_dir, ca)
    remote.register(stack.stack, pub, "remote-1")
    site = remote.site(stack.stack, "site-1", site_dir, partition_id=3, num_partitions=4)
    stranger_dir = tmp_path / "stranger" / "certs"
    remote.make_site_keys(stranger_dir, ca)  # never registered
    stranger = f"{stack.stack.project}-stranger-{secrets.token_hex(2)}"
    try:
        site.up(timeout=240)
        deadline = time.monotonic() + 120
        while online_nodes(stack) < 4 and time.monotonic() < deadline:
            time.sleep(3)
        assert online_nodes(stack) == 4, stack.json("GET", "/nodes")
        assert "/v1/fleet/" in stack.stack.logs("fleet-proxy", tail=500), "the remote site did not go through the proxy"

        run_id = stack.start_run(num_rounds=1, min_available_nodes=4)
        detail = stack.wait_finished(run_id)
        assert detail["status"] == "completed", detail
        assert len(detail["rounds"][0]["clients"]) == 4, detail["rounds"][0]

        # The same image and flags with a key the SuperLink never saw: refused, never online.
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                stranger,
                "--network",
                stack.stack.network(),
                "--label",
                "org.flowerbed.test=stranger",
                "-v",
                f"{stranger_dir}:/certs:ro",
                "--entrypoint",
                "flowerbed-supernode",
                FLOWER_IMAGE,
                "--root-certificates",
                "/certs/ca.crt",
                "--auth-supernode-private-key",
                "/certs/supernode.key",
                "--superlink",
                "fleet-proxy:443",
                "--isolation",
                "process",
                "--node-config",
                "partition-id=0 num-partitions=4",
            ]
        )
        deadline = time.monotonic() + 90
        logs = ""
        while time.monotonic() < deadline:
            logs = subprocess.run(["docker", "logs", stranger], capture_output=True, text=True, timeout=60)
            logs = logs.stdout + logs.stderr
            if "Failed to activate" in logs or "PERMISSION_DENIED" in logs.upper() or "401" in logs:
                break
            time.sleep(3)
        assert "Failed to activate" in logs or "401" in logs, logs[-2000:]
        assert online_nodes(stack) == 4
    finally:
        subprocess.run(["docker", "rm", "-f", stranger], capture_output=True, timeout=60)
        site.down(volumes=True)
