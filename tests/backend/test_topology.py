"""No drift between compose.yaml and local mode: the launcher derives from compose."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from flowerbed.cli import build_parser
from flowerbed.local import launcher
from flowerbed.local.topology import (
    CONTAINER_ONLY,
    LOCAL_ELSEWHERE,
    LOCAL_ROLES,
    Ports,
    compose_services,
    local_processes,
    node_data_value,
    role_of,
)

ROOT = Path(__file__).resolve().parents[2]
# Flags whose values are addresses or paths: container names locally become 127.0.0.1 ports.
ADDRESS_FLAGS = {"--host", "--port", "--superlink", "--runtime-api-address", "--database"}


# Node-config keys that are paths of a deployment: compose names each site's mounted directory,
# local mode the directories given with --node-data (none without).
PATH_KEYS = {"data-dir"}


def _normalized(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token in ADDRESS_FLAGS:
            out[i + 1] = "<address>"
        if token == "--node-config":
            config = parse_config_args([out[i + 1]])
            out[i + 1] = str(sorted((k, v) for k, v in config.items() if k not in PATH_KEYS))
    return out


def test_every_compose_service_is_run_locally_or_declared_container_only():
    services = compose_services(ROOT / "compose.yaml")
    allowed = set(LOCAL_ROLES) | set(LOCAL_ELSEWHERE) | {CONTAINER_ONLY}
    roles = {name: role_of(svc) for name, svc in services.items()}
    assert all(role in allowed for role in roles.values()), roles
    assert set(LOCAL_ROLES) <= set(roles.values()), "a Flower role is missing from compose.yaml"


def test_local_processes_use_the_compose_commands():
    services = compose_services(ROOT / "compose.yaml")
    n = sum(role_of(s) == "supernode" for s in services.values())
    specs = local_processes(n, Ports(), "/tmp/state.db", services)
    assert len(specs) == 2 + 2 * n
    for spec in specs:
        compose_argv = services[spec.name]["command"]
        assert spec.argv[0] == LOCAL_ROLES[spec.role]
        assert _normalized(spec.argv[1:]) == _normalized(compose_argv), spec.name
    # and the addresses are the local ones
    superlink = next(s for s in specs if s.role == "superlink")
    assert superlink.argv[superlink.argv.index("--host") + 1] == "127.0.0.1"
    node_configs = [s.argv[s.argv.index("--node-config") + 1] for s in specs if s.role == "supernode"]
    assert node_configs == [f"partition-id={i} num-partitions={n}" for i in range(n)]


def test_local_processes_scale_the_supernode_template():
    specs = local_processes(10, Ports(superlink=18000, supernode_base=19000), "/tmp/state.db")
    nodes = [s for s in specs if s.role == "supernode"]
    clients = [s for s in specs if s.role == "superexec-clientapp"]
    assert len(nodes) == len(clients) == 10
    assert clients[9].argv[-1] == "127.0.0.1:19009"
    assert nodes[9].argv[nodes[9].argv.index("--superlink") + 1] == "127.0.0.1:18000"


def test_flower_environment_matches_compose(tmp_path):
    raw = (ROOT / "compose.yaml").read_text()
    import yaml

    flower_env = yaml.safe_load(raw)["x-flower-env"]
    local = launcher.flower_env(tmp_path)
    for key, value in flower_env.items():
        assert local[key] == str(value), key


def test_roles_served_elsewhere_exist_locally():
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "up" in subcommands
    assert "serve" in subcommands  # backend role; it also serves the web role's files


def test_free_port_blocks_avoid_the_kernels_ephemeral_range():
    """Ports the kernel may hand to outgoing connections can be taken before a server binds them."""
    import socket

    from flowerbed.local.topology import _ephemeral_port_range, free_port_block

    low, high = _ephemeral_port_range()
    for _ in range(20):
        base = free_port_block(5)
        assert all(not low <= port <= high for port in range(base, base + 5)), base
        with socket.socket() as s:
            s.bind(("127.0.0.1", base + 4))


def test_node_data_directories_reach_each_supernodes_node_config(tmp_path):
    dirs = [tmp_path / "site a", tmp_path / "site-b"]
    specs = local_processes(2, Ports(superlink=18000, supernode_base=19000), "/tmp/state.db", node_data=dirs)
    configs = [s.argv[s.argv.index("--node-config") + 1] for s in specs if s.role == "supernode"]
    assert configs == [f'partition-id={i} num-partitions=2 data-dir="{d.resolve()}"' for i, d in enumerate(dirs)]
    assert parse_config_args([configs[0]])["data-dir"] == str(dirs[0].resolve())  # what the SuperNode will read
    with pytest.raises(ValueError, match="one per node"):
        local_processes(3, Ports(superlink=18000, supernode_base=19000), "/tmp/state.db", node_data=dirs)
    with pytest.raises(ValueError, match="quotes"):
        node_data_value(tmp_path / 'it"s')


def test_up_starts_one_supernode_per_data_directory(tmp_path):
    from flowerbed.cli import _node_count

    args = build_parser().parse_args(["up", "--node-data", str(tmp_path), "--node-data", str(tmp_path)])
    assert _node_count(args) is None and args.nodes == 2
    args = build_parser().parse_args(["up", "--nodes", "3", "--node-data", str(tmp_path)])
    assert "one directory per node" in str(_node_count(args))
    args = build_parser().parse_args(["up", "--node-data", str(tmp_path / "missing")])
    assert "not a directory" in str(_node_count(args))
    args = build_parser().parse_args(["up"])
    assert _node_count(args) is None and args.nodes == 3
