"""Checkpoints on real federations: retention by policy, and a full disk while writing one."""

from __future__ import annotations

import hashlib
import resource
from pathlib import Path

import pytest
from backend_fixture import TERMINAL, Backend, start_run, wait_for
from federation_runs import run_training, warm_caches

from flowerbed_app.runtime import checkpoints

pytestmark = pytest.mark.federation


def test_retention_keeps_the_newest_and_the_best_and_they_verify_and_download(backend: Backend) -> None:
    with backend.client() as client:
        run_id = start_run(client, num_rounds=4, keep_checkpoints="last-2", seed=11)["run_id"]
        detail = wait_for(
            lambda: (d := client.get(f"/training/{run_id}").json())["status"] in TERMINAL and d, 900, "the run to end"
        )
        assert detail["status"] == "completed", detail["error"]
        assert detail["config"]["keep_checkpoints"] == "last-2"
        accuracy = {r["round"]: r["accuracy"] for r in detail["rounds"]}
        best = max(accuracy, key=lambda r: (accuracy[r], r))
        listed = client.get("/models", params={"run_id": run_id}).json()["items"]
        assert sorted(m["round"] for m in listed) == sorted({3, 4, best})
        for model in listed:
            assert model["metrics"]["accuracy"] == accuracy[model["round"]]
            checkpoints.verify(checkpoints.find_checkpoint(backend.data_dir / "models", model["model_id"]))
            download = client.get(f"/models/{model['model_id']}/download")
            assert download.status_code == 200
            assert hashlib.sha256(download.content).hexdigest() == model["sha256"] == download.headers["x-checksum-sha256"]
        for pruned in sorted(set(accuracy) - {3, 4, best}):
            assert client.get(f"/models/{run_id}-round-{pruned:04d}/download").status_code == 404
    files = sorted(p.name for p in (backend.data_dir / "models" / run_id).iterdir())
    assert files == sorted(f"round-{r:04d}.{ext}" for r in {3, 4, best} for ext in ("json", "safetensors"))


def test_keep_checkpoints_rejects_other_spellings_naming_the_field(backend: Backend) -> None:
    with backend.client() as client:
        for bad in ("last-0", "last 5", "newest", "last-5+best", ""):
            response = client.post("/training/start", json={"keep_checkpoints": bad})
            assert response.status_code == 422, (bad, response.text)
            assert any(error["loc"][-1] == "keep_checkpoints" for error in response.json()["detail"]), response.text


def test_a_full_disk_while_checkpointing_fails_the_run_and_leaves_no_partial_file(start_federation) -> None:
    overrides = {"num-server-rounds": 2, "max-train-examples": 200, "fraction-train": 1.0}
    warm_caches(2, overrides)  # the ServerApp must hit the limit with its checkpoint, not with a cache file
    federation = start_federation(2)
    # Files the ServerApp writes may grow to 2 MiB: its 4.8 MB checkpoint cannot be written.
    # (RLIMIT_FSIZE on the executor is inherited by the ServerApp process it starts for the run.)
    executor = next(p for p in federation.processes if p.role == "superexec-serverapp")
    limit = 2 << 20
    resource.prlimit(executor.pid, resource.RLIMIT_FSIZE, (limit, limit))
    outcome = run_training(federation, overrides)

    assert outcome.flower_status == "finished:failed", outcome.events[-3:]
    (failed,) = outcome.of("run_failed")
    assert failed["reason"].startswith("file too large writing checkpoint round 1 to "), failed
    assert not outcome.of("checkpoint_saved")
    run_key = outcome.of("run_started")[0]["run_id"]
    run_dir = Path(federation.data_dir) / "models" / run_key
    assert not (run_dir.exists() and list(run_dir.iterdir())), list(run_dir.iterdir())
