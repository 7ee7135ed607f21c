"""The backend's side of the compose deployment, on real processes: TLS to the SuperLink, the metrics port.

- `FlowerControl` on `https://` with the CA (`FLOWERBED_SUPERLINK_CA_CERT`) against a real
  `flower-superlink` serving TLS with certificates from deploy/tls/generate-certs.sh; a foreign CA and
  plain `http://` are refused.
- `FLOWERBED_METRICS_PORT` serves the Prometheus exposition on a second port, without a token.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_fixture import stop_group
from conftest import free_port
from fastapi.testclient import TestClient

from flowerbed.api.main import create_app
from flowerbed.flower_control import FlowerControl, parse_superlink_url
from flowerbed.local.topology import generate_certs
from flowerbed.settings import Settings


@pytest.fixture(scope="module")
def tls_superlink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    certs = generate_certs(tmp_path_factory.mktemp("tls") / "certs")
    port = free_port()
    flwr = Path(sys.executable).parent / "flower-superlink"
    log = open(certs.parent / "superlink.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(flwr), "--ssl-ca-certfile", str(certs / "ca.crt"), "--ssl-certfile", str(certs / "server.crt"),
         "--ssl-keyfile", str(certs / "server.key"), "--isolation", "process", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "FLWR_HOME": str(certs.parent / "flwr-home")},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                FlowerControl(f"https://127.0.0.1:{port}", ca_cert=certs / "ca.crt").list_nodes()
                break
            except Exception:
                assert proc.poll() is None and time.monotonic() < deadline, (certs.parent / "superlink.log").read_text()[-2000:]
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", certs
    finally:
        stop_group(proc, grace=20)
        log.close()


def test_superlink_url_schemes() -> None:
    assert parse_superlink_url("127.0.0.1:8000") == ("127.0.0.1:8000", False)
    assert parse_superlink_url("http://superlink:8000") == ("superlink:8000", False)
    assert parse_superlink_url("https://superlink:8000/") == ("superlink:8000", True)
    for bad in ("ftp://superlink:8000", "https://", "https://superlink:8000/v1"):
        with pytest.raises(ValueError, match="SuperLink URL"):
            parse_superlink_url(bad)


def test_control_api_over_https_with_the_ca(tls_superlink: tuple[str, Path], tmp_path: Path) -> None:
    address, certs = tls_superlink
    assert FlowerControl(f"https://{address}", ca_cert=certs / "ca.crt").list_nodes() == []
    foreign = generate_certs(tmp_path / "foreign")
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        FlowerControl(f"https://{address}", ca_cert=foreign / "ca.crt").list_nodes()
    with pytest.raises(Exception):  # noqa: B017 - plain HTTP to a TLS port: any transport error
        FlowerControl(f"http://{address}").list_nodes()
    with pytest.raises(ValueError, match="plain-HTTP"):
        FlowerControl(f"http://{address}", ca_cert=certs / "ca.crt")


def test_metrics_port_serves_the_exposition_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, api_token=secrets.token_hex(20), metrics_port=port, superlink_url="127.0.0.1:9")
    with TestClient(create_app(settings)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert response.status == 200
        assert "# TYPE flowerbed_round_duration_seconds histogram" in body
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
