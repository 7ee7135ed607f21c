"""The local federation's processes, derived from compose.yaml.

compose.yaml is the one description of the topology. Local mode runs the same Flower
services as processes on 127.0.0.1: each compose service's `org.flowerbed.local-role`
label says what it is, and its `command:` gives the flags. Here we only swap container
addresses for local ports and paths, and scale the SuperNode template to N nodes, so
local mode and the container stack cannot drift apart (tests/backend/test_topology.py).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# What runs locally per role, and the program each image's entrypoint is. flowerbed-* are
# Flower's own programs patched in place (services/clientapp, package flowerbed_node).
LOCAL_ROLES = {
    "superlink": "flower-superlink",
    "superexec-serverapp": "flowerbed-superexec",  # Flower's; polls less when idle
    "supernode": "flowerbed-supernode",  # Flower's, with a fix for stopping a run; no idle waits
    "superexec-clientapp": "flowerbed-superexec",  # Flower's; forks each ClientApp from a warm parent
}
# Flower's unpatched programs for the same roles (benchmarks compare against them).
FLOWER_PROGRAMS = {
    **LOCAL_ROLES,
    "superexec-serverapp": "flower-superexec",
    "supernode": "flower-supernode",
    "superexec-clientapp": "flower-superexec",
}
# Roles with a local counterpart that is not a Flower process.
LOCAL_ELSEWHERE = {
    "backend": "`flowerbed serve` (started by `flowerbed up`)",
    "web": "the backend serves the built dashboard",
}
CONTAINER_ONLY = "container-only"
ROLE_LABEL = "org.flowerbed.local-role"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    role: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ports:
    superlink: int = 8000
    supernode_base: int = 9094

    def supernode(self, index: int) -> int:
        return self.supernode_base + index


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port_block(count: int, attempts: int = 200) -> int:
    """First of `count` consecutive ports free on 127.0.0.1, for a federation on free ports.

    Chosen outside the kernel's ephemeral range on purpose: a port from bind(("", 0)) comes
    from the range the kernel also gives every outgoing connection, and between the probe and
    the server's own bind a running federation's short-lived connections can take it (seen:
    a SuperNode exiting with "address already in use")."""
    low, high = _ephemeral_port_range()
    start, stop = (1024, low - count) if low - count > 1024 + 1000 else (high + 1, 65536 - count)
    for _ in range(attempts):
        base = random.randrange(start, stop)
        held: list[socket.socket] = []
        try:
            for offset in range(count):
                held.append(socket.socket())
                held[-1].bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1 in {start}-{stop}")


def compose_file() -> Path:
    if env := os.environ.get("FLOWERBED_COMPOSE_FILE"):
        return Path(env)
    from flowerbed.paths import app_dir

    return app_dir().parent.parent / "compose.yaml"


def compose_services(path: Path | None = None) -> dict[str, dict[str, Any]]:
    return yaml.safe_load((path or compose_file()).read_text())["services"]


def role_of(service: dict[str, Any]) -> str:
    labels = service.get("labels") or {}
    if isinstance(labels, list):  # compose also allows ["key=value", ...]
        labels = dict(item.split("=", 1) for item in labels)
    return str(labels.get(ROLE_LABEL, ""))


def _by_role(services: dict[str, dict[str, Any]], role: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, svc) for name, svc in services.items() if role_of(svc) == role]


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    if flag not in argv:
        raise ValueError(f"compose command lacks {flag}: {argv}")
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


ISOLATIONS = ("process", "subprocess")


def local_processes(
    num_nodes: int,
    ports: Ports,
    state_db: str,
    services: dict[str, dict[str, Any]] | None = None,
    isolation: str = "process",
    fleet_address: str | None = None,
    programs: dict[str, str] | None = None,
    node_data: Sequence[Path] | None = None,
) -> list[ProcessSpec]:
    """Local argv for SuperLink, serverapp executor and N SuperNodes with their executors.

    `isolation="subprocess"` is Flower's default layout (SuperLink and SuperNodes spawn
    their own executors); it exists for comparison benchmarks — compose and local mode
    use "process" (measured faster here, see BENCHMARKS.md). `fleet_address` is what the
    SuperNodes dial when something (a relay, a proxy) sits in front of the SuperLink.
    `programs` replaces LOCAL_ROLES (e.g. FLOWER_PROGRAMS, for a bare-Flower baseline).
    `node_data`: one data directory per SuperNode (its node config's data-dir, for runs with
    data-source=node); the partition settings stay, so partition runs work on them too.
    """
    if node_data is not None and len(node_data) != num_nodes:
        raise ValueError(f"{len(node_data)} node data directories for {num_nodes} SuperNodes: give one per node")
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    services = services if services is not None else compose_services()
    programs = programs or LOCAL_ROLES
    link = f"127.0.0.1:{ports.superlink}"
    ((_, superlink),) = _by_role(services, "superlink")
    ((_, serverapp),) = _by_role(services, "superexec-serverapp")
    supernodes = _by_role(services, "supernode")
    clientapps = _by_role(services, "superexec-clientapp")
    if not supernodes or not clientapps:
        raise ValueError("compose.yaml defines no supernode/superexec-clientapp service")

    argv = [programs["superlink"], *superlink["command"]]
    argv = _set_flag(_set_flag(_set_flag(argv, "--host", "127.0.0.1"), "--port", str(ports.superlink)), "--database", state_db)
    specs = [ProcessSpec("superlink", "superlink", _set_flag(argv, "--isolation", isolation))]
    argv = _set_flag([programs["superexec-serverapp"], *serverapp["command"]], "--runtime-api-address", link)
    if isolation == "process":
        specs.append(ProcessSpec("superexec-serverapp", "superexec-serverapp", argv))

    node_template = [programs["supernode"], *supernodes[0][1]["command"]]
    client_template = [programs["superexec-clientapp"], *clientapps[0][1]["command"]]
    for i in range(num_nodes):
        port = ports.supernode(i)
        argv = _set_flag(node_template, "--superlink", fleet_address or link)
        argv = _set_flag(_set_flag(argv, "--host", "127.0.0.1"), "--port", str(port))
        node_config = f"partition-id={i} num-partitions={num_nodes}"
        if node_data is not None:
            node_config += f" data-dir={node_data_value(node_data[i])}"
        argv = _set_flag(argv, "--node-config", node_config)
        specs.append(ProcessSpec(f"supernode-{i + 1}", "supernode", _set_flag(argv, "--isolation", isolation)))
        if isolation == "process":
            argv = _set_flag(client_template, "--runtime-api-address", f"127.0.0.1:{port}")
            specs.append(ProcessSpec(f"superexec-clientapp-{i + 1}", "superexec-clientapp", argv))
    return specs


def node_data_value(directory: Path) -> str:
    """A data directory as a node-config value (Flower parses values as TOML: a quoted string)."""
    path = str(Path(directory).expanduser().resolve())
    if any(c in path for c in "\"'\\\n"):
        raise ValueError(f"node data directory {path!r}: quotes, backslashes and newlines cannot pass in a node config")
    return f'"{path}"'


# What compose.tls.yaml passes Flower for TLS, each a certificate or key file. Node
# authentication (--enable-supernode-auth, --auth-supernode-private-key) stays out of local
# processes: it admits only keys registered through the Control API first.
TLS_FILE_FLAGS = ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--root-certificates")


def with_tls(specs: Sequence[ProcessSpec], certs: Path, services: dict[str, dict[str, Any]] | None = None) -> list[ProcessSpec]:
    """The TLS overlay on local processes: each role takes the certificate flags its compose.tls.yaml
    service has, with the files of the same name in `certs` (deploy/tls/generate-certs.sh's CERT_DIR:
    ca.crt, server.crt, server.key), instead of --insecure. Roles the overlay leaves plain (the
    ClientApp executor, which talks to its SuperNode's local Runtime API) stay as they are."""
    base = services if services is not None else compose_services()
    overlay = compose_services(compose_file().with_name("compose.tls.yaml"))
    flags: dict[str, list[str]] = {}
    for name, service in overlay.items():
        command = service.get("command") or []
        role = role_of(base.get(name, {}))
        if role in LOCAL_ROLES and role not in flags and any(f in command for f in TLS_FILE_FLAGS):
            flags[role] = []
            for flag in TLS_FILE_FLAGS:
                if flag in command:
                    flags[role] += [flag, str(certs / Path(command[command.index(flag) + 1]).name)]
    if set(flags) != set(LOCAL_ROLES) - {"superexec-clientapp"}:
        raise ValueError(f"compose.tls.yaml gives TLS flags to {sorted(flags)}: expected the SuperLink, executor, SuperNodes")
    return [
        ProcessSpec(s.name, s.role, [a for a in s.argv if a != "--insecure"] + flags[s.role], s.env) if s.role in flags else s
        for s in specs
    ]


def generate_certs(directory: Path) -> Path:
    """A CA and the SuperLink's certificate (SANs include 127.0.0.1) in the new `directory`, made by
    deploy/tls/generate-certs.sh as the compose TLS overlay's job makes them: what `with_tls` takes."""
    directory.mkdir(parents=True)
    script = compose_file().parent / "deploy" / "tls" / "generate-certs.sh"
    env = {**os.environ, "CERT_DIR": str(directory), "NUM_SUPERNODES": "0"}
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=120)
    return directory
