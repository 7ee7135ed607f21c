"""Starts and stops a local federation: real Flower processes, one log file each.

Every process gets its own process group, so stopping one also ends what it spawned
(superexec → flwr-serverapp / flwr-clientapp): no orphans after Ctrl-C or SIGTERM.
And every process is leashed to its owner (`process_leash`): if the owner dies without
stopping them — SIGKILL, a crash — the kernel sends each one SIGTERM.
The federation is described in `<data dir>/federation.json` so other commands
(`flowerbed train`, `flowerbed down`, tests) can find and reuse it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowerbed.flower_control import FlowerControl
from flowerbed.local import process_groups
from flowerbed.local.process_leash import leash
from flowerbed.local.topology import Ports, ProcessSpec, local_processes, with_tls

STATE_FILE = "federation.json"


def flower_env(data_dir: Path) -> dict[str, str]:
    """Environment for every Flower process: offline, private FLWR_HOME, our caches."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "FLWR_HOME": str(data_dir / "flwr-home"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": os.environ.get("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1"),
        "FLOWERBED_CACHE_DIR": str(data_dir / "cache"),
        "FLOWERBED_MODEL_STORE": str(data_dir / "models"),
        "FLOWERBED_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }


def write_flwr_config(data_dir: Path, superlink_port: int, ca_cert: Path | None = None) -> None:
    """A project-local FLWR_HOME whose default connection is this SuperLink (over TLS with `ca_cert`)."""
    home = data_dir / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    security = f'root-certificates = "{ca_cert}"' if ca_cert else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "flowerbed"\n\n[superlink.flowerbed]\naddress = "127.0.0.1:{superlink_port}"\n{security}\n'
    )


@dataclass
class RunningProcess:
    name: str
    role: str
    pid: int
    log: str


@dataclass
class Federation:
    data_dir: str
    superlink_url: str
    num_nodes: int
    owner_pid: int
    processes: list[RunningProcess] = field(default_factory=list)
    ca_cert: str | None = None  # the SuperLink serves TLS, verified against this CA

    def save(self) -> None:
        path = Path(self.data_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, data_dir: Path) -> Federation | None:
        path = data_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        raw["processes"] = [RunningProcess(**p) for p in raw.get("processes", [])]
        return cls(**raw)

    def alive(self) -> bool:
        return bool(self.processes) and all(_pid_alive(p.pid) for p in self.processes)

    def control(self) -> FlowerControl:
        if self.ca_cert:
            return FlowerControl(f"https://{self.superlink_url}", ca_cert=Path(self.ca_cert))
        return FlowerControl(self.superlink_url)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(
    data_dir: Path,
    num_nodes: int,
    ports: Ports | None = None,
    wait_timeout: float = 60.0,
    extra_env: dict[str, str] | None = None,
    isolation: str = "process",
    fleet_address: str | None = None,
    programs: dict[str, str] | None = None,
    node_data: list[Path] | None = None,
    tls: Path | None = None,
) -> Federation:
    """Start SuperLink, serverapp superexec, N SuperNodes and their clientapp superexecs.

    `fleet_address`: what the SuperNodes dial instead of the SuperLink (a relay or proxy);
    `programs`: what each role runs, if not ours (topology.FLOWER_PROGRAMS: bare Flower);
    `node_data`: each SuperNode's own data directory (node config data-dir), one per node;
    `tls`: a directory from deploy/tls/generate-certs.sh: the SuperLink serves TLS with its
    certificate and every process that dials it verifies it, as compose.tls.yaml has it."""
    ports = ports or Ports()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    (data_dir / "state").mkdir(exist_ok=True)
    write_flwr_config(data_dir, ports.superlink, tls / "ca.crt" if tls else None)
    env = {**os.environ, **flower_env(data_dir), **(extra_env or {})}
    federation = Federation(
        data_dir=str(data_dir),
        superlink_url=f"127.0.0.1:{ports.superlink}",
        num_nodes=num_nodes,
        owner_pid=os.getpid(),
        ca_cert=str(tls / "ca.crt") if tls else None,
    )
    try:
        db = str(data_dir / "state" / "state.db")
        specs = local_processes(
            num_nodes, ports, db, isolation=isolation, fleet_address=fleet_address, programs=programs, node_data=node_data
        )
        if tls:
            specs = with_tls(specs, tls)
        for spec in specs:
            federation.processes.append(_spawn(spec, env, logs))
            federation.save()
            if spec.role == "superlink":
                _wait_for_superlink(federation, wait_timeout)
        _wait_for_nodes(federation, num_nodes, wait_timeout)
    except BaseException:
        stop(federation)
        raise
    return federation


def _spawn(spec: ProcessSpec, env: dict[str, str], logs: Path) -> RunningProcess:
    log_path = logs / f"{spec.name}.log"
    proc_env = {**env, **spec.env}
    if spec.role in ("superexec-clientapp", "supernode"):  # supernode: subprocess isolation
        # Several ClientApps share the cores; one BLAS thread each avoids oversubscription,
        # and at most one computing ClientApp per core (flowerbed_app.runtime.compute_slots).
        proc_env.setdefault("FLOWERBED_TORCH_THREADS", "1")
        proc_env.setdefault("FLOWERBED_COMPUTE_SLOTS", str(len(os.sched_getaffinity(0))))
        proc_env.setdefault("FLOWERBED_COMPUTE_SLOTS_DIR", str(Path(env["FLOWERBED_DATA_DIR"]) / "compute-slots"))
    if spec.role == "supernode":
        # While a run has work for it, a node asks for the next message every 0.1 s (on one
        # machine that is cheap and starts each round's ClientApps sooner); idle, it backs off
        # to Flower's 3 s (flowerbed_node.supernode).
        proc_env.setdefault("FLOWERBED_SUPERNODE_POLL_SECONDS", "0.1")
    argv = list(spec.argv)
    if spec.role.startswith("superexec"):
        # Flower's own watchdog: an executor exits when its owner dies, even by SIGKILL.
        argv += ["--parent-pid", str(os.getpid())]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=proc_env,
            start_new_session=True,
            preexec_fn=leash(),
        )
    return RunningProcess(spec.name, spec.role, proc.pid, str(log_path))


def _wait_for_superlink(federation: Federation, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    control = federation.control()
    while True:
        try:
            control.list_nodes()
            return
        except Exception as exc:  # connection refused until it listens
            _check_alive(federation)
            if time.monotonic() > deadline:
                raise TimeoutError(f"SuperLink did not answer within {timeout:.0f}s: {exc}") from exc
            time.sleep(0.2)


def _wait_for_nodes(federation: Federation, num_nodes: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    control = federation.control()
    while (online := control.online_node_count()) < num_nodes:
        _check_alive(federation)
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {online}/{num_nodes} SuperNodes connected within {timeout:.0f}s")
        time.sleep(0.25)


def _check_alive(federation: Federation) -> None:
    for p in federation.processes:
        if not _pid_alive(p.pid) or _is_zombie(p.pid):
            raise RuntimeError(f"{p.name} exited during start-up; see {p.log}")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


# Stop order: ClientApp side first, then the ServerApp side, the SuperLink last, so
# SuperNodes can still tell the SuperLink they are leaving (otherwise a restarted
# federation sees stale "online" nodes until their heartbeats expire).
_STOP_TIERS = (("superexec-clientapp", "supernode"), ("superexec-serverapp",), ("superlink",))


def stop(federation: Federation, grace: float = 10.0) -> None:
    """SIGTERM each tier's process groups, SIGKILL what outlives grace; no orphans."""
    known = {role for tier in _STOP_TIERS for role in tier}
    tiers = [[p.pid for p in federation.processes if p.role in tier] for tier in _STOP_TIERS]
    tiers.append([p.pid for p in federation.processes if p.role not in known])
    for groups in tiers:
        process_groups.stop_groups(groups, grace)
    state = Path(federation.data_dir) / STATE_FILE
    current = Federation.load(Path(federation.data_dir))
    if current and current.owner_pid == federation.owner_pid:
        state.unlink(missing_ok=True)


def kill_process(proc: RunningProcess) -> None:
    """SIGKILL one process group (fault-injection in tests, `flowerbed` never does this)."""
    process_groups.signal_group(proc.pid, signal.SIGKILL)
    process_groups.reap(proc.pid)
