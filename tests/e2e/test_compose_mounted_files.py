"""The files the compose services mount: Grafana's dashboards and datasources, Prometheus' scrape
jobs, Tempo's receivers and the two nginx configurations, checked against the rendered compose file
(tests/support/compose_config.py) and the installed Flower."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from compose_config import (  # noqa: F401 - base_config, tls_config, compose_variant: the base, tls and variant fixtures
    ROOT,
    base_config,
    compose_variant,
    tls_config,
    volume_sources,
)

GRAFANA = ROOT / "deploy/grafana"
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
