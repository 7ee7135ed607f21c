"""A remote SuperNode site (deploy/remote-supernode/compose.yaml) as a compose project of its own.

It joins an existing Docker network (here: the central stack's) and dials the fleet proxy over TLS
with its own key, as a SuperNode on another host would. The site's key pair is made here
(`ssh-keygen`, OpenSSH EC P-384, what flower-supernode requires) and its public key is registered
through the central stack's `supernode-register` job, the documented way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from compose_harness import standins
from compose_harness.engine import run
from compose_harness.stack import IMAGE_PREFIX, IMAGE_TAG, ROOT, ComposeStack

REMOTE = ROOT / "deploy" / "remote-supernode"
SUPERNODE_UID = 10001  # the Flower image's user: the key must be readable by it and nobody else


def make_site_keys(directory: Path, ca_pem: bytes) -> Path:
    """directory/{ca.crt, supernode.key (0600, uid 10001), supernode.pub}; returns the public key's path."""
    if shutil.which("ssh-keygen") is None:
        raise RuntimeError("ssh-keygen is missing: `apt-get install openssh-client`")
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "supernode.key"
    run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", directory.name, "-f", str(key)])
    pub = directory / "supernode.pub"
    (directory / "supernode.key.pub").rename(pub)
    (directory / "ca.crt").write_bytes(ca_pem)
    key.chmod(0o600)
    os.chown(key, SUPERNODE_UID, SUPERNODE_UID)
    directory.chmod(0o755)
    return pub


def central_file(central: ComposeStack, volume: str, path: str) -> bytes:
    """A file out of one of the central stack's volumes (e.g. ca.crt from tls-public)."""
    proc = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{central.volume(volume)}:/v:ro", standins.image("busybox"), "cat", f"/v/{path}"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return proc.stdout


def register(central: ComposeStack, pub: Path, name: str) -> None:
    """Put `pub` into the central `tls-public` volume as supernode-<name>.pub and run the registration job."""
    run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{central.volume('tls-public')}:/certs",
            "-v",
            f"{pub.parent}:/in:ro",
            standins.image("busybox"),
            "cp",
            f"/in/{pub.name}",
            f"/certs/supernode-{name}.pub",
        ],
        timeout=120,
    )
    central.compose("run", "--rm", "supernode-register", timeout=300)


def site(
    central: ComposeStack,
    name: str,
    cert_dir: Path,
    partition_id: int,
    num_partitions: int,
    fleet_address: str = "fleet-proxy:443",
    own_network: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> ComposeStack:
    """The remote compose project `<central>-<name>` (not yet up).

    On the central stack's network by default. With `own_network` (host name → address, e.g. the
    central host's name → the Docker host's bridge address) the site keeps its own project network
    and reaches the central host only at those addresses: through the fleet proxy's published port,
    as a site on another host would. `env` adds variables to its .env (e.g. the one POST /nodes wrote).
    """
    workdir = cert_dir.parent
    data_dir = workdir / f"{name}-data"  # the site's own data (empty here), not a directory in the repository
    data_dir.mkdir(parents=True, exist_ok=True)
    network_override = workdir / f"{name}-network.yaml"
    if own_network is None:
        network_override.write_text(f"networks:\n  default:\n    name: {central.network()}\n    external: true\n")
    else:
        hosts = "".join(f'      - "{host}:{address}"\n' for host, address in own_network.items())
        network_override.write_text(f"services:\n  supernode:\n    extra_hosts:\n{hosts}")
    stack = ComposeStack(
        project=f"{central.project}-{name}",
        workdir=workdir,
        compose_files=[REMOTE / "compose.yaml", network_override],
        project_dir=REMOTE,
        extra_env={
            "FLOWERBED_IMAGE_PREFIX": IMAGE_PREFIX,
            "FLOWERBED_IMAGE_TAG": IMAGE_TAG,
            "FLOWERBED_FLEET_ADDRESS": fleet_address,
            "FLOWERBED_PARTITION_ID": str(partition_id),
            "FLOWERBED_NUM_PARTITIONS": str(num_partitions),
            "FLOWERBED_REMOTE_CERT_DIR": str(cert_dir),
            "FLOWERBED_NODE_DATA": str(data_dir),
            "FLOWERBED_SITE_NAME": name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            **(env or {}),
        },
    )
    stack.write_env()
    return stack
