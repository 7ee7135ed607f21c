"""Invariants of the Docker Compose deployment, checked on what compose itself parses.

Each variant is rendered with compose v2's `config` (tests/support/compose_config.py), then the parsed
result is checked. No Docker engine is needed. The Grafana, Prometheus, Tempo and nginx files the services
mount: tests/e2e/test_compose_mounted_files.py. tests/e2e/test_compose_stack.py and
tests/e2e/test_compose_tls.py boot the stack for real.
"""

from __future__ import annotations

import fnmatch
import re

from compose_config import (  # noqa: F401 - base_config, tls_config, compose_variant: the base, tls and variant fixtures
    BASE,
    ENV_EXAMPLE,
    REMOTE,
    ROOT,
    TLS,
    VARIANTS,
    base_config,
    compose_variant,
    env_example,
    is_one_shot,
    labels,
    render,
    tls_config,
    volume_sources,
)

ALLOWED_ROLES = {
    "superlink",
    "supernode",
    "superexec-serverapp",
    "superexec-clientapp",
    "backend",
    "web",
    "container-only",
}
# Services that run without a healthcheck, and why. Keep this list short.
NO_HEALTHCHECK = {
    # flower-superexec only polls a Runtime API; with the commands the local
    # launcher shares it listens on nothing, so there is nothing to ask.
    "superexec-serverapp": "listens on no port",
    "superexec-clientapp*": "listens on no port",
    # Not verified here that the pinned Tempo image has a shell or an HTTP
    # client to run a check with; Grafana's Tempo datasource shows its state.
    "tempo": "image may have no shell/HTTP client",
}
PUBLISHERS = {
    "base": {"web", "backend", "grafana"},
    "tls": {"web", "backend", "grafana", "fleet-proxy"},
    "remote": set(),
}

# --- compose -------------------------------------------------------------------


def test_superlink_publishes_no_ports(base, tls):
    for cfg in (base, tls):
        assert not cfg["services"]["superlink"].get("ports"), "the Control API has no auth: never publish it"


def test_only_expected_services_publish_ports(variant):
    name, cfg = variant
    publishing = {s for s, svc in cfg["services"].items() if svc.get("ports")}
    assert publishing == PUBLISHERS[name]


def test_every_long_running_service_has_healthcheck_or_a_reason(variant):
    _, cfg = variant
    for name, svc in cfg["services"].items():
        if is_one_shot(svc) or svc.get("healthcheck"):
            continue
        assert any(fnmatch.fnmatch(name, pat) for pat in NO_HEALTHCHECK), f"{name}: no healthcheck"


def test_depends_on_conditions_can_be_met(variant):
    _, cfg = variant
    services = cfg["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on missing {dep}"
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"
            if spec["condition"] == "service_completed_successfully":
                assert is_one_shot(services[dep]), f"{name} waits for {dep} to exit; it is not a one-shot job"


def test_long_running_services_restart_and_have_limits(variant):
    _, cfg = variant
    for name, svc in cfg["services"].items():
        if is_one_shot(svc):
            continue
        assert svc.get("restart") == "unless-stopped", name
        limits = (svc.get("deploy") or {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name}: no cpu/memory limit"


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_images_are_pinned(variant):
    _, cfg = variant
    for name, svc in cfg["services"].items():
        assert pinned(svc.get("image", "")), f"{name}: image {svc.get('image')!r} is not pinned"


DOCKERFILES = [ROOT / "services/Dockerfile", *ROOT.glob("services/*/Dockerfile"), *ROOT.glob("deploy/*/Dockerfile")]


def test_dockerfile_bases_are_build_args_with_pinned_defaults():
    """Every FROM is an earlier stage or `${ARG}` whose default is pinned: a mirror can replace any base."""
    assert len(DOCKERFILES) >= 3
    for df in DOCKERFILES:
        text = df.read_text()
        defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
        stages: set[str] = set()
        for base_image, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I):
            if base_image not in stages:
                m = re.fullmatch(r"\$\{(\w+)\}", base_image)
                assert m, f"{df.relative_to(ROOT)}: FROM {base_image} is not a build arg"
                assert pinned(defaults.get(m.group(1), "")), f"{df.relative_to(ROOT)}: ARG {m.group(1)} has no pinned default"
            if stage:
                stages.add(stage)


def test_python_images_share_one_dockerfile_and_one_build():
    """Backend and every Flower process come from services/Dockerfile; the Flower image is built once."""
    base = render(VARIANTS["base"])
    builds = {name: svc["build"] for name, svc in base["services"].items() if svc.get("build")}
    python = {n: b for n, b in builds.items() if b["dockerfile"] == "services/Dockerfile"}
    assert {b["target"] for b in python.values()} == {"flower", "backend"}
    assert [b["target"] for b in python.values()].count("flower") == 1, "the Flower image must be built once"
    flower = next(f"{svc['image']}" for svc in base["services"].values() if svc.get("build", {}).get("target") == "flower")
    for name, svc in base["services"].items():
        role = labels(svc).get("org.flowerbed.local-role")
        if role in ("superlink", "supernode", "superexec-serverapp", "superexec-clientapp"):
            assert svc["image"] in {flower, *next(b.get("tags", []) for b in python.values() if b["target"] == "flower")}, name


def test_every_variable_is_documented_in_env_example():
    documented = env_example()
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            assert i > 0 and lines[i - 1].startswith("#"), f".env.example: {line} has no comment above it"
    for f in (BASE, TLS, REMOTE):
        text = f.read_text().replace("$$", "")  # $$ is an escaped literal dollar
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
            assert var in documented, f"{f.relative_to(ROOT)} uses ${var}, missing from .env.example"


def test_named_volumes_hold_the_state(base):
    volumes = base.get("volumes") or {}
    mounts = {
        "superlink": ("/app/state", "superlink-state"),
        "postgres": ("/var/lib/postgresql/data", "pgdata"),
        "superexec-serverapp": ("/app/models", "models"),
        "backend": ("/app/models", "models"),
        "tempo": ("/var/tempo", "tempo-data"),
    }
    for service, (target, volume) in mounts.items():
        assert volume in volumes, f"named volume {volume} missing"
        assert volume_sources(base["services"][service]).get(target) == volume, f"{service}: {target} not on {volume}"


def test_every_service_has_a_local_role(variant):
    _, cfg = variant
    for name, svc in cfg["services"].items():
        role = labels(svc).get("org.flowerbed.local-role")
        assert role in ALLOWED_ROLES, f"{name}: org.flowerbed.local-role={role!r}"


def test_flower_commands_are_plain_string_lists(variant):
    """The local launcher reads these lists; they must stay lists of strings."""
    _, cfg = variant
    for name, svc in cfg["services"].items():
        if labels(svc).get("org.flowerbed.local-role") not in ("container-only", "web"):
            cmd = svc.get("command")
            assert isinstance(cmd, list) and all(isinstance(a, str) for a in cmd), name


def node_config_of(svc: dict) -> dict[str, object]:
    """A SuperNode's --node-config as Flower itself parses it (values are TOML)."""
    from flwr.common.config import parse_config_args

    cmd = svc["command"]
    return parse_config_args([cmd[cmd.index("--node-config") + 1]])


def node_configs(cfg: dict) -> list[dict[str, object]]:
    return [node_config_of(svc) for svc in cfg["services"].values() if labels(svc).get("org.flowerbed.local-role") == "supernode"]


def test_supernode_partitions_cover_0_to_n_minus_1(base):
    configs = node_configs(base)
    ids = sorted(c["partition-id"] for c in configs)
    assert ids == list(range(len(configs)))
    assert {c["num-partitions"] for c in configs} == {len(configs)}


def executor_data_mounts(cfg: dict) -> dict[str, tuple[dict[str, object], dict]]:
    """supernode service → (its node config, the mount of its data-dir in the ClientApp executor that serves it)."""
    services = cfg["services"]
    out = {}
    for name, svc in services.items():
        if labels(svc).get("org.flowerbed.local-role") != "superexec-clientapp":
            continue
        cmd = svc["command"]
        node = cmd[cmd.index("--runtime-api-address") + 1].split(":")[0]
        config = node_config_of(services[node])
        mounts = [v for v in svc.get("volumes") or [] if v["target"] == config.get("data-dir")]
        assert len(mounts) == 1, f"{name} does not mount {node}'s data-dir {config.get('data-dir')!r}"
        out[node] = (config, mounts[0])
    return out


def test_each_supernode_names_a_data_directory_its_executor_mounts_read_only(variant):
    """data_source=node: the ClientApp (in the executor, not the SuperNode) reads the directory the
    SuperNode's node config names — a host directory of that site alone, never writable."""
    name, cfg = variant
    mounts = executor_data_mounts(cfg)
    assert len(mounts) == len(node_configs(cfg)), f"{name}: a SuperNode without a data directory"
    for node, (config, mount) in mounts.items():
        assert mount["type"] == "bind" and mount.get("read_only") is True, f"{node}: {mount}"
        assert {"partition-id", "num-partitions"} <= set(config), f"{node}: partition runs need these too"
    assert len({m["source"] for _, m in mounts.values()}) == len(mounts), f"{name}: sites share a host directory"
    assert len({c["data-dir"] for c, _ in mounts.values()}) == len(mounts)


def test_each_sites_directory_is_a_variable_of_its_own(tmp_path):
    """FLOWERBED_NODE_DATA_<n> moves supernode-<n>'s data and nothing else; the remote site has FLOWERBED_NODE_DATA."""
    defaults = {node: m["source"] for node, (_, m) in executor_data_mounts(render(VARIANTS["base"])).items()}
    assert defaults == {f"supernode-{n}": str(ROOT / "data" / f"site-{n}") for n in (1, 2, 3)}
    moved = executor_data_mounts(render(VARIANTS["base"], {"FLOWERBED_NODE_DATA_2": str(tmp_path / "hospital-b")}))
    assert {node: m["source"] for node, (_, m) in moved.items()} == defaults | {"supernode-2": str(tmp_path / "hospital-b")}
    remote = executor_data_mounts(
        render(VARIANTS["remote"], {"FLOWERBED_NODE_DATA": str(tmp_path / "clinic"), "FLOWERBED_SITE_NAME": "clinic-7"})
    )
    ((config, mount),) = remote.values()
    assert mount["source"] == str(tmp_path / "clinic") and config["data-dir"] == mount["target"] == "/data/clinic-7"


def test_each_clientapp_executor_has_its_own_supernode(base):
    services = base["services"]
    targets = []
    for name, svc in services.items():
        if labels(svc).get("org.flowerbed.local-role") == "superexec-clientapp":
            cmd = svc["command"]
            host = cmd[cmd.index("--runtime-api-address") + 1].split(":")[0]
            assert labels(services[host]).get("org.flowerbed.local-role") == "supernode", name
            targets.append(host)
    assert len(targets) == len(set(targets)) == len(node_configs(base))


def test_tls_overlay_drops_insecure_towards_the_superlink(tls):
    for name, svc in tls["services"].items():
        role = labels(svc).get("org.flowerbed.local-role")
        if role in ("superlink", "supernode", "superexec-serverapp"):
            assert "--insecure" not in svc["command"], name
        if role == "supernode":
            assert "--root-certificates" in svc["command"] and "--auth-supernode-private-key" in svc["command"]
    assert "--enable-supernode-auth" in tls["services"]["superlink"]["command"]


def test_the_stack_tests_know_every_one_shot_job(variant):
    """The live tests wait for every long-running service to be healthy; one-shot jobs exit."""
    from compose_fixture import ONE_SHOT

    _, cfg = variant
    one_shots = {name for name, svc in cfg["services"].items() if is_one_shot(svc)}
    assert one_shots <= ONE_SHOT, f"one-shot jobs unknown to tests/support/compose_fixture.py: {one_shots - ONE_SHOT}"


def test_the_stack_refuses_weak_secrets_before_anything_holds_them(base):
    """`preflight` runs the backend's secret policy on every secret the stack holds; their holders wait for it."""
    preflight = base["services"]["preflight"]
    checked = set(preflight["command"][2:])
    assert preflight["command"][:2] == ["flowerbed", "check-secrets"]
    assert checked == {"FLOWERBED_API_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    for holder in ("backend", "postgres", "grafana"):
        assert base["services"][holder]["depends_on"]["preflight"]["condition"] == "service_completed_successfully", holder
