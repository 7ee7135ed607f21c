"""The files and the command a new site needs to join: deploy/remote-supernode/ filled in for it.

The variables are the ones deploy/remote-supernode/compose.yaml reads (a test checks every one it
requires is set here), so the "Add a site" screen can never drift from the compose file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REMOTE_DIR = "deploy/remote-supernode"
ENV_PATH = f"{REMOTE_DIR}/.env"
CA_PATH = f"{REMOTE_DIR}/certs/ca.crt"
KEY_PATH = f"{REMOTE_DIR}/certs/supernode.key"
FLEET_PLACEHOLDER = "CENTRAL-HOST:9443"
COMMAND = f"docker compose --env-file {ENV_PATH} -f {REMOTE_DIR}/compose.yaml up -d"


@dataclass(frozen=True)
class SiteFileSpec:
    path: str
    content: str | None
    note: str = ""


@dataclass(frozen=True)
class SiteSetupSpec:
    files: list[SiteFileSpec]
    command: str
    warnings: list[str] = field(default_factory=list)


def env_values(name: str, fleet_address: str, partition_id: int, num_partitions: int) -> dict[str, str]:
    """The site's .env: paths are relative to deploy/remote-supernode/, where compose resolves them."""
    return {
        "FLOWERBED_SITE_NAME": name,
        "FLOWERBED_FLEET_ADDRESS": fleet_address or FLEET_PLACEHOLDER,
        "FLOWERBED_PARTITION_ID": str(partition_id),
        "FLOWERBED_NUM_PARTITIONS": str(num_partitions),
        "FLOWERBED_REMOTE_CERT_DIR": "./certs",
        "FLOWERBED_NODE_DATA": "./data",
    }


def site_setup(
    name: str, fleet_address: str, ca_cert: Path | None, partition_id: int = 0, num_partitions: int = 1
) -> SiteSetupSpec:
    env = env_values(name, fleet_address, partition_id, num_partitions)
    env_text = "".join(f"{key}={value}\n" for key, value in env.items())
    env_text += "# Optional: a YAML file of trusted FAB signing keys; the SuperNode then runs only signed apps.\n"
    env_text += "# FLOWERBED_TRUSTED_ENTITIES=./trusted-entities.yaml\n"
    warnings: list[str] = []
    if not fleet_address:
        warnings.append(
            f"FLOWERBED_FLEET_ADDRESS is a placeholder ({FLEET_PLACEHOLDER}): put the fleet proxy's published "
            "host:port there (the platform's FLOWERBED_FLEET_PUBLIC_ADDRESS is unset)."
        )
    ca_text: str | None = None
    if ca_cert is not None and ca_cert.is_file():
        ca_text = ca_cert.read_text()
    else:
        warnings.append("The platform has no CA certificate configured: copy the central ca.crt (tls-public volume) by hand.")
    files = [
        SiteFileSpec(ENV_PATH, env_text),
        SiteFileSpec(CA_PATH, ca_text, "The central CA: the site trusts the fleet proxy's certificate through it."),
        SiteFileSpec(
            KEY_PATH,
            None,
            "The site's private key, the pair of the public key registered here; it never leaves the site. "
            "chmod 600 and chown 10001:10001 (the image's user).",
        ),
    ]
    return SiteSetupSpec(files, COMMAND, warnings)
