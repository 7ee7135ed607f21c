"""Flowerbed's one door to a SuperLink: flwr's own Control API client.

Every run, whether started from the CLI or the REST API, goes through here: the FAB
is built once per content hash, runs start with typed overrides, and logs are read
incrementally by timestamp so a reader that restarts resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flwr.cli.build import build_fab_from_disk
from flwr.common.constant import HEARTBEAT_PATIENCE
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=no-name-in-module
    ListNodesRequest,
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
    StreamLogsRequest,
    UnregisterNodeRequest,
)
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.fab import Fab
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

from flowerbed.site_keys import fingerprint_of_flower_bytes

_FAB_LOCK = threading.Lock()
_FAB_CACHE: dict[str, tuple[bytes, str]] = {}


@dataclass(frozen=True)
class FlowerRun:
    """The parts of Flower's run record we show users."""

    run_id: int
    status: str
    sub_status: str
    bytes_sent: int
    bytes_recv: int
    pending_at: str
    running_at: str
    finished_at: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def source_hash(app: Path) -> str:
    """Hash of the app's source files: the FAB cache key."""
    digest = hashlib.sha256()
    for path in sorted(app.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".toml"}:
            digest.update(str(path.relative_to(app)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_fab(app: Path) -> tuple[bytes, str]:
    """FAB bytes and their sha256, built once per source hash (not per run)."""
    key = source_hash(app)
    with _FAB_LOCK:
        if key not in _FAB_CACHE:
            fab = build_fab_from_disk(app)
            _FAB_CACHE[key] = (fab, hashlib.sha256(fab).hexdigest())
        return _FAB_CACHE[key]


def parse_superlink_url(url: str) -> tuple[str, bool]:
    """(host:port, tls) of a SuperLink URL: `https://` means TLS; `http://` or no scheme, plain HTTP."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return url.strip().rstrip("/"), False
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"SuperLink URL {url!r}: the scheme must be http:// or https://")
    address = rest.rstrip("/")
    if not address or "/" in address:
        raise ValueError(f"SuperLink URL {url!r}: expected http(s)://host:port with no path")
    return address, scheme.lower() == "https"


class FlowerControl:
    """Thin typed facade over `ControlHttpClient` for one SuperLink.

    `https://host:port` talks TLS, verified against `ca_cert` (a PEM file) when given, else the
    system trust store; `http://host:port` or a bare `host:port` is plain HTTP (local mode).
    """

    def __init__(self, address: str, timeout: float = 30.0, ca_cert: Path | None = None) -> None:
        self.address, tls = parse_superlink_url(address)
        if ca_cert is not None and not tls:
            raise ValueError(f"a CA certificate ({ca_cert}) was given for a plain-HTTP SuperLink URL {address!r}: use https://")
        self.client = ControlHttpClient.from_server_address(
            server_address=self.address,
            insecure=not tls,
            root_certificates=ca_cert.read_bytes() if ca_cert is not None else None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
        )

    def start_run(self, app: Path, run_config: Mapping[str, Any]) -> int:
        fab_bytes, fab_hash = build_fab(app)
        request = StartRunRequest(
            fab=fab_to_proto(Fab(fab_hash, fab_bytes, {})),
            override_config=user_config_to_proto(dict(run_config)),
        )
        response = self.client.StartRun(request)
        if not response.HasField("run_id"):
            raise RuntimeError("the SuperLink refused to start the run")
        return int(response.run_id)

    def stop_run(self, run_id: int) -> bool:
        return bool(self.client.StopRun(StopRunRequest(run_id=run_id)).success)

    def get_run(self, run_id: int) -> FlowerRun | None:
        runs = self.client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
        if run_id not in runs:
            return None
        run = runs[run_id]
        return FlowerRun(
            run_id=run_id,
            status=run.status.status,
            sub_status=run.status.sub_status,
            bytes_sent=int(run.bytes_sent),
            bytes_recv=int(run.bytes_recv),
            pending_at=run.pending_at,
            running_at=run.running_at,
            finished_at=run.finished_at,
        )

    def run_details(self, run_id: int) -> str:
        runs = self.client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
        return runs[run_id].status.details if run_id in runs else ""

    def stream_logs(self, run_id: int, after_timestamp: float = 0.0) -> Iterator[tuple[str, float]]:
        """(text, latest_timestamp) chunks after a timestamp; ends when the run ends."""
        for response in self.client.StreamLogs(StreamLogsRequest(run_id=run_id, after_timestamp=after_timestamp)):
            yield response.log_output, float(response.latest_timestamp)

    def list_nodes(self) -> list[dict[str, Any]]:
        nodes = self.client.ListNodes(ListNodesRequest()).nodes_info
        return [
            {
                "node_id": int(n.node_id),
                "status": n.status,
                "last_seen": _last_heartbeat(n) or n.last_activated_at,
                "online_until": n.online_until,
                "registered_at": n.registered_at,
                "name": n.name if n.HasField("name") else "",
                "key_fingerprint": fingerprint_of_flower_bytes(n.public_key),
            }
            for n in nodes
        ]

    def register_node(self, public_key: bytes, name: str) -> int:
        """Admit a SuperNode's key (PEM) under a name, as `flwr supernode register` does; its node id.

        Raises `httpx.HTTPStatusError` with Flower's answer when the SuperLink refuses (key in use, …).
        """
        response = self.client.RegisterNode(RegisterNodeRequest(public_key=public_key, name=name))
        if not response.node_id:
            raise RuntimeError("the SuperLink answered RegisterNode without a node id")
        return int(response.node_id)

    def unregister_node(self, node_id: int) -> None:
        """Revoke a SuperNode (`flwr supernode unregister`): its key is no longer admitted."""
        self.client.UnregisterNode(UnregisterNodeRequest(node_id=node_id))

    def online_node_count(self) -> int:
        return sum(1 for n in self.list_nodes() if n["status"] == "online")


def _last_heartbeat(node: Any) -> str:
    """ISO time of a node's last heartbeat, derived from Flower's deadline.

    Flower stores only `online_until` = last heartbeat + HEARTBEAT_PATIENCE × interval;
    `last_activated_at` is when the node connected, not when it was last heard from.
    """
    if not node.online_until or not node.heartbeat_interval:
        return ""
    seen = float(node.online_until) - HEARTBEAT_PATIENCE * float(node.heartbeat_interval)
    return datetime.fromtimestamp(seen, tz=UTC).isoformat()
