"""Many sites on their own Docker networks: onboarding through the platform, partitions and rejoin.

One orchestrator stack (compose.yaml + the TLS overlay, without its own SuperNodes) and three sites,
each the unchanged deploy/remote-supernode compose project on a network of its own, shared by every
scenario of the module. A site reaches the orchestrator only at the fleet proxy's published port: the
port is published on the Docker host's bridge address, and a site knows the central host by name
(`extra_hosts`), as a site on another host would. Each site is added through POST /nodes (its key pair
made on the site, only the .pub sent) and runs with the .env and CA certificate the answer holds.

Then, on the same stack, least destructive first: a run with all three; a site's SuperNode container
restarted; a site cut off mid-round; the SuperLink restarted mid-run and the run resumed; a site revoked.
Runs are tiny (200 examples, one local epoch) and every wait polls with a deadline. Each phase's
duration is printed (`pytest -s`) and appended to test-artifacts/compose-timings.jsonl.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from compose_fixture import ROOT, Booted, booted_stack, record_timing

from compose_harness import engine, remote
from compose_harness.engine import run
from compose_harness.stack import ComposeStack
from flowerbed import site_setup

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]
CENTRAL_HOST = "flowerbed-central"  # the name sites dial; in the server certificate's SANs
ORCHESTRATOR = ("backend", "fleet-proxy", "superexec-serverapp")  # and what they depend on: no local SuperNodes
SITES = ("site-a", "site-b", "site-c")
# A healthy round ends when its replies are in: the timeout only bounds a lost reply, and a cold first
# round on a loaded two-core machine was seen taking over 120 s.
ROUND_TIMEOUT = 300.0
CUT_ROUND_TIMEOUT = 90.0  # the cut-off run's: bounds what a round waits for a site that is cut off
RUN = {"local_epochs": 1, "round_timeout": ROUND_TIMEOUT, "node_wait_timeout": 60.0}
PHASES: dict[str, float] = {}


def phase(name: str, started: float) -> None:
    PHASES[name] = round(time.monotonic() - started, 1)
    print(f"\n[sites] {name}: {PHASES[name]:.0f}s", flush=True)


def poll(what: str, check: Callable[[], object], timeout: float, every: float = 1.0) -> object:
    """`check()`'s first truthy value within `timeout` seconds, or an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f}s"
        time.sleep(every)


@dataclass
class Site:
    name: str
    node_id: str
    stack: ComposeStack

    def supernode(self) -> str:
        return self.stack.container("supernode")

    def logs(self, since: str = "") -> str:
        """Its SuperNode's log (since a Docker timestamp, e.g. the container's StartedAt)."""
        cmd = ["docker", "logs", *(["--since", since] if since else []), self.supernode()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return proc.stdout + proc.stderr

    def refusal(self) -> str:
        """The log lines saying the SuperLink refused this SuperNode (empty while none)."""
        refused = ("Failed to initialize the connection", "Failed to activate", "PERMISSION_DENIED", "401", "does not recognize")
        return "\n".join(line for line in self.logs().splitlines() if any(r in line for r in refused))


@dataclass
class Federation:
    central: Booted
    sites: dict[str, Site]

    def nodes(self) -> dict[str, dict]:
        return {n["node_id"]: n for n in self.central.json("GET", "/nodes")["items"]}

    def online(self) -> dict[str, str]:
        """node_id → site name of the online nodes."""
        return {i: n["name"] for i, n in self.nodes().items() if n["status"] == "online"}

    def wait_online(self, names: set[str], timeout: float = 120.0) -> None:
        """Until exactly `names` are online; a SuperLink still starting (GET /nodes → 503) is waited for too."""
        deadline = time.monotonic() + timeout
        online: dict[str, str] = {}
        while True:
            status, _, body = self.central.request("GET", "/nodes")
            if status == 200:
                online = {n["node_id"]: n["name"] for n in json.loads(body)["items"] if n["status"] == "online"}
                if set(online.values()) == names:
                    return
            assert time.monotonic() < deadline, f"online: {online}, expected {names}; last GET /nodes {status}: {body[:300]!r}"
            time.sleep(1)

    def start_run(self, **overrides: object) -> str:
        return self.central.start_run(**{**RUN, **overrides})


def bridge_gateway() -> str:
    """The Docker host's address on its default bridge: what containers on any network can reach it at."""
    config = json.loads(run(["docker", "network", "inspect", "bridge", "-f", "{{json (index .IPAM.Config 0)}}"]).stdout)
    if config.get("Gateway"):
        return config["Gateway"]
    # Some engines list only the subnet after a restart; Docker's bridge gateway is then its first address.
    assert config.get("Subnet"), f"the default bridge network has neither gateway nor subnet: {config}"
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def site_env(answer: dict) -> dict[str, str]:
    """The .env POST /nodes wrote, minus the two paths the test puts outside the repository."""
    (env_file,) = [f for f in answer["setup"]["files"] if f["path"] == site_setup.ENV_PATH]
    env = dict(line.split("=", 1) for line in env_file["content"].splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in env.items() if k not in ("FLOWERBED_REMOTE_CERT_DIR", "FLOWERBED_NODE_DATA")}


def add_site(central: Booted, workdir: Path, name: str, partition_id: int, gateway: str) -> Site:
    cert_dir = workdir / name / "certs"
    pub = remote.make_site_keys(cert_dir, b"")  # the site's own key pair; the CA comes from the platform below
    answer = central.json(
        "POST", "/nodes", {"name": name, "public_key": pub.read_text(), "partition_id": partition_id, "num_partitions": 3}
    )
    files = {f["path"]: f["content"] for f in answer["setup"]["files"]}
    (cert_dir / "ca.crt").write_text(files[site_setup.CA_PATH])
    env = site_env(answer)
    assert env["FLOWERBED_FLEET_ADDRESS"] == f"{CENTRAL_HOST}:{central.stack.env['FLOWERBED_FLEET_PORT']}", env
    stack = remote.site(central.stack, name, cert_dir, partition_id, 3, own_network={CENTRAL_HOST: gateway}, env=env)
    return Site(name, answer["node_id"], stack)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    workdir = tmp_path_factory.mktemp("compose-sites")
    started = time.monotonic()
    try:
        engine.ensure_engine(ROOT / ".flowerbed")  # booted_stack does it too; the bridge's address is needed first
    except engine.EngineUnavailable as error:
        pytest.fail(f"the compose tests need a Docker engine: {error}")
    gateway = bridge_gateway()
    env = {"FLOWERBED_PUBLIC_HOSTNAME": CENTRAL_HOST, "FLOWERBED_FLEET_BIND_ADDRESS": gateway}
    with booted_stack(workdir, tls=True, services=ORCHESTRATOR, extra_env=env) as central:
        PHASES["images built (cache)"] = round(central.build_seconds, 1)
        PHASES["orchestrator up"] = round(central.up_seconds, 1)
        sites: dict[str, Site] = {}
        try:
            step = time.monotonic()
            for i, name in enumerate(SITES):
                sites[name] = add_site(central, workdir, name, i, gateway)
            phase("3 sites added (POST /nodes)", step)
            step = time.monotonic()
            with ThreadPoolExecutor(len(sites)) as pool:  # three hosts start at once, as they would
                list(pool.map(lambda s: s.stack.up(timeout=300), sites.values()))
            fed = Federation(central, sites)
            fed.wait_online(set(SITES))
            phase("3 sites up and online", step)
            phase("fixture total", started)
            yield fed
        finally:
            step = time.monotonic()
            with ThreadPoolExecutor(len(sites) or 1) as pool:
                list(pool.map(lambda s: s.stack.down(volumes=True), sites.values()))
            phase("sites down", step)
    total = round(time.monotonic() - started, 1)
    print("\n[sites] phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in PHASES.items()) + f"; module {total:.0f}s")
    record_timing("sites", **{k: v for k, v in PHASES.items()}, module_s=total)


def inspect(container: str) -> dict:
    return json.loads(run(["docker", "inspect", container]).stdout)[0]


def networks_of(container: str) -> set[str]:
    return set(inspect(container)["NetworkSettings"]["Networks"])


def one_round_on(federation: Federation, names: Iterable[str]) -> None:
    """A 1-round run on the sites online (`names`) completes with exactly those sites as its clients."""
    expected = {federation.sites[name].node_id for name in names}
    run_id = federation.start_run(num_rounds=1, min_available_nodes=len(expected))
    detail = federation.central.wait_finished(run_id, timeout=300)
    assert detail["status"] == "completed", story(detail)
    assert clients_of(detail["rounds"][0]) == expected, detail["rounds"][0]


def clients_of(round_: dict) -> set[str]:
    return {str(c["node_id"]) for c in round_["clients"]}


def failed_in(round_: dict) -> set[str]:
    return {str(f["node_id"]) for f in round_["failures"]}


def story(detail: dict) -> str:
    """A run's status, error and each round's clients and failures: what an assertion should show."""
    rounds = [(r["round"], sorted(clients_of(r)), r["failures"]) for r in detail.get("rounds", [])]
    return f"status {detail.get('status')}, error {detail.get('error')!r}, rounds {rounds}"


def test_three_sites_added_through_the_platform_train_over_tls(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    for site in federation.sites.values():
        # Its own network only: no orchestrator container on it, the orchestrator's network not joined.
        assert networks_of(site.supernode()) == {site.stack.network()}, site.name
        on_site_network = json.loads(run(["docker", "network", "inspect", site.stack.network()]).stdout)[0]["Containers"]
        assert all(c["Name"].startswith(site.stack.project) for c in on_site_network.values()), on_site_network
    nodes = federation.nodes()
    for site in federation.sites.values():
        assert nodes[site.node_id]["name"] == site.name and nodes[site.node_id]["status"] == "online"
        assert nodes[site.node_id]["key_fingerprint"].startswith("SHA256:")
    assert "/v1/fleet/" in central.stack.logs("fleet-proxy", tail=2000), "the sites did not come through the proxy"

    one_round_on(federation, SITES)
    phase("test: 3 sites, 1 round over TLS", started)


def test_a_restarted_site_rejoins_with_its_key_and_trains_in_the_next_run(federation: Federation) -> None:
    started = time.monotonic()
    site = federation.sites["site-b"]
    before = site.supernode()
    site.stack.compose("restart", "supernode", timeout=180)
    started_at = inspect(before)["State"]["StartedAt"]
    # Back online only after the restart: its new process activated its node (by its key) again.
    poll("site-b's restarted SuperNode activated", lambda: "SuperNode ID:" in site.logs(since=started_at), 120)
    federation.wait_online(set(SITES))
    # The same node ids: with node authentication the node is its key, not a new registration (flwr#4844).
    one_round_on(federation, SITES)
    phase("test: site SuperNode restarted, next run", started)


def test_a_site_cut_off_mid_round_fails_that_round_then_trains_again(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    site = federation.sites["site-c"]
    container = site.supernode()
    restarts_before = inspect(container)["RestartCount"]
    received_before = site.logs().count("Received successfully")
    run_id = federation.start_run(num_rounds=3, min_available_nodes=3, min_nodes=2, round_timeout=CUT_ROUND_TIMEOUT)
    # Mid-round: the site has its round-1 train message and its ClientApp is at work.
    poll("site-c received its round-1 message", lambda: site.logs().count("Received successfully") > received_before, 180)
    # The link drops and comes back as it was: the same names on the site's network, so the site's
    # executor finds its SuperNode again (a bare `network connect` would drop the `supernode` alias).
    aliases = inspect(container)["NetworkSettings"]["Networks"]
    aliases = [a for a in aliases[site.stack.network()]["Aliases"] if not container.startswith(a)]
    run(["docker", "network", "disconnect", site.stack.network(), container])
    cut_at = time.monotonic()
    try:
        # Cut off until round 1 is over without it (its reply cannot arrive before the round timeout).
        detail = central.wait_run(run_id, lambda d: len(d["rounds"]) >= 1 or d["status"] != "running", 180, "round 1 over")
        print(f"\n[sites] round 1 over {time.monotonic() - cut_at:.0f}s after the cut", flush=True)
    finally:
        run(["docker", "network", "connect", *(f"--alias={a}" for a in aliases), site.stack.network(), container])
    first = detail["rounds"][0]
    assert site.node_id in failed_in(first), first
    assert site.node_id not in clients_of(first) and len(clients_of(first)) == 2, first
    detail = central.wait_finished(run_id, timeout=300)
    assert detail["status"] == "completed", story(detail)
    later = [r["round"] for r in detail["rounds"][1:] if site.node_id in clients_of(r)]
    restarts_after = inspect(container)["RestartCount"]
    print(f"\n[sites] site-c trained again in rounds {later}; container restarts {restarts_before} → {restarts_after}")
    assert later, [(r["round"], clients_of(r), r["failures"]) for r in detail["rounds"]]
    assert restarts_after == restarts_before, "the site's SuperNode was restarted"
    phase("test: cut off mid-round and back", started)


def test_the_superlink_restarted_mid_run_fails_it_with_the_reason_and_one_call_resumes_it(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    rounds = 4  # room for a round or two to finish while the SuperLink stops on a loaded machine
    run_id = federation.start_run(num_rounds=rounds, min_available_nodes=3)
    central.wait_run(run_id, lambda d: len(d["rounds"]) >= 1, 300, "round 1 done")
    # Down for longer than Flower's heartbeat window (2 × 30 s): a restart of a few seconds is one Flower
    # 1.41 rides out (the run completed, seen here), a longer one ends the run — the case to recover from.
    central.stack.compose("stop", "--timeout", "2", "superlink", timeout=300)
    try:
        failed = central.wait_run(run_id, lambda d: d["status"] != "running", 300, "over without its SuperLink")
    finally:
        central.stack.compose("start", "superlink", timeout=300)
    assert failed["status"] == "failed" and failed["error"], story(failed)
    assert f"/training/{run_id}/resume" in failed["error"], failed["error"]  # the reason says what to do
    done = [r["round"] for r in failed["rounds"]]
    assert done == list(range(1, len(done) + 1)) and len(done) < rounds, story(failed)
    print(f"\n[sites] failed after rounds {done} with: {failed['error']}")
    federation.wait_online(set(SITES))  # the sites reconnect by themselves
    resumed = central.json("POST", f"/training/{run_id}/resume")
    detail = central.wait_finished(resumed["run_id"], timeout=300)
    assert detail["status"] == "completed", story(detail)
    assert detail["resumed_from"] == run_id and detail["from_checkpoint"]
    # Numbered on from its last checkpoint, which may be newer than the last round the backend recorded (a
    # round can end while the SuperLink, which carries its events, is down): none redone, ending with the last.
    checkpoint_round = int(detail["from_checkpoint"].rsplit("-round-", 1)[1])
    assert checkpoint_round >= len(done), (detail["from_checkpoint"], done)
    assert [r["round"] for r in detail["rounds"]] == list(range(checkpoint_round + 1, rounds + 1)), story(detail)
    assert all(clients_of(r) == {s.node_id for s in federation.sites.values()} for r in detail["rounds"]), story(detail)
    phase("test: SuperLink restarted mid-run, resumed", started)


def test_a_revoked_site_is_refused_and_the_others_train_on(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    site = federation.sites["site-a"]
    status, _, body = central.request("DELETE", f"/nodes/{site.node_id}")
    assert status == 204, body
    assert site.node_id not in federation.nodes()
    federation.wait_online({"site-b", "site-c"}, timeout=60)
    # Its next connection is refused: its SuperNode cannot act for the deleted node any more.
    refusal = poll("site-a refused", site.refusal, 120, every=2)
    print(f"\n[sites] site-a: {str(refusal)[:500]}")
    one_round_on(federation, ("site-b", "site-c"))
    assert site.node_id not in federation.online()
    phase("test: revoked site refused, others train", started)
