"""MLflow tracking against a real `mlflow server` (SQLite store, free port), stopped mid-run and restarted.

One 3-round run on the shared federation, through a backend with FLOWERBED_MLFLOW_TRACKING_URI set:
the server goes away after round 1 reached it — the run completes regardless, the API shows the warning —
and comes back on the same port and store, where the export resumes. MLflow's own client then reads
back params equal to the run config, `accuracy` with 3 steps equal to the API's, and the registered
best model, loaded with mlflow.pytorch, predicts the classes our checkpoint predicts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from backend_fixture import TERMINAL, start_run, stop_group, wait_for
from conftest import free_port

from flowerbed import launcher
from flowerbed.process_leash import leash
from flowerbed_app import checkpoints
from flowerbed_app.fashion_mnist import DEFAULT_DIR, load_split
from flowerbed_app.models import create_model
from flowerbed_app.training import to_tensor

pytestmark = pytest.mark.federation
REGISTERED = "flowerbed-test-cnn"
# MLflow 3 reports usage to its makers unless told not to: not from tests (nor from the backend, which sets it too).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@dataclass
class MlflowServer:
    directory: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.directory / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.directory / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 — the child writes it until stop()
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, start_new_session=True, preexec_fn=leash()
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, (self.directory / "server.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"mlflow server not up in {timeout:.0f}s"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_group(self.proc, grace=5)  # gunicorn/uvicorn workers live in the same group
        self.proc = None


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow", free_port())
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def test_runs_reach_mlflow_and_survive_its_outage(
    mlflow_server: MlflowServer, api_federation: launcher.Federation, backend_factory, tmp_path: Path
) -> None:
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    env = {
        "FLOWERBED_MLFLOW_TRACKING_URI": mlflow_server.url,
        "FLOWERBED_MLFLOW_EXPERIMENT": "flowerbed-test",
        "FLOWERBED_MLFLOW_REGISTERED_MODEL": REGISTERED,
        "FLOWERBED_MLFLOW_RETRY_SECONDS": "1",
    }
    backend = backend_factory(tmp_path / "backend", api_federation.superlink_url, env=env)
    with backend.client() as client:
        run_id = start_run(client, num_rounds=3, seed=5)["run_id"]

        def detail() -> dict:
            return client.get(f"/training/{run_id}").json()

        exported = wait_for(lambda: (d := detail())["mlflow"]["exported_seq"] and d["rounds"] and d, 600, "round 1 in MLflow")
        assert exported["status"] == "running", "the outage must come mid-run"
        mlflow_run_id = exported["mlflow"]["mlflow_run_id"]
        mlflow_server.stop()

        warned = wait_for(lambda: (d := detail())["mlflow"]["warning"] and d, 300, "the API to show the MLflow warning")
        assert "MLflow export to http://127.0.0.1" in warned["mlflow"]["warning"], warned["mlflow"]
        assert "retrying every 1 s" in warned["mlflow"]["warning"]
        finished = wait_for(lambda: (d := detail())["status"] in TERMINAL and d, 600, "the run to end")
        assert finished["status"] == "completed", finished["error"]  # MLflow gone: the run goes on
        assert detail()["mlflow"]["warning"], "nothing can have been exported while the server was down"

        mlflow_server.start()
        wait_for(
            lambda: (m := detail()["mlflow"])["warning"] is None and m["exported_seq"] > exported["mlflow"]["exported_seq"],
            300,
            "the export to resume",
        )
        api_run = detail()

    mlflow_client = MlflowClient(mlflow_server.url)
    remote = wait_for(
        lambda: (r := mlflow_client.get_run(mlflow_run_id)).info.status == "FINISHED" and r, 300, "the MLflow run to finish"
    )
    assert remote.data.tags["flowerbed.run_id"] == run_id
    assert remote.data.tags["flower.run_id"] == api_run["flower_run_id"]
    assert remote.data.tags.get("trace_id") == api_run["trace_id"]  # none here: this backend does not trace
    assert remote.data.tags["flowerbed.status"] == "completed"
    assert remote.data.params == {k: "" if v is None else str(v) for k, v in api_run["config"].items()}
    history = sorted(mlflow_client.get_metric_history(mlflow_run_id, "accuracy"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(r["round"], r["accuracy"]) for r in api_run["rounds"]]
    assert [m.step for m in history] == [1, 2, 3]
    assert {f"node{c['partition_id']}_train_loss" for c in api_run["rounds"][0]["clients"]} <= set(remote.data.metrics)

    # The registered best model is our best checkpoint: same predictions.
    (version,) = mlflow_client.search_model_versions(f"name = '{REGISTERED}'")
    mlflow.set_tracking_uri(mlflow_server.url)
    loaded = mlflow.pytorch.load_model(f"models:/{REGISTERED}/{version.version}")
    best_id = remote.data.tags["flowerbed.best_model_id"]
    best = max(api_run["rounds"], key=lambda r: (r["accuracy"], r["round"]))
    assert best_id == f"{run_id}-round-{best['round']:04d}"
    ours = create_model("cnn")
    ours.load_state_dict(checkpoints.load_state_dict(checkpoints.find_checkpoint(backend.data_dir / "models", best_id)))
    ours.eval()
    images, _ = load_split(DEFAULT_DIR, "test")
    batch = to_tensor(images[:200])
    with torch.inference_mode():
        assert np.array_equal(loaded(batch).argmax(1).numpy(), ours(batch).argmax(1).numpy())
