"""Unit tests: which checkpoints a policy keeps, pruning on real files, failed writes, deadlines."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from flowerbed.runs.run_config import TrainingConfig
from flowerbed_app.run_settings import RunSettings, SettingsError
from flowerbed_app.runtime import checkpoint_retention, checkpoints
from flowerbed_app.runtime.handler_deadline import RoundTimeExceeded, deadline, seconds_left

ACCURACY = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: 0.65, 6: 0.8}


def _metas(accuracy: dict[int, float]) -> list[dict]:
    return [{"round": r, "metrics": {"accuracy": a}} for r, a in accuracy.items()]


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ("all", {1, 2, 3, 4, 5, 6}),
        ("best", {2, 6}),
        ("last-1", {2, 6}),
        ("last-3", {2, 4, 5, 6}),
        ("last-10", {1, 2, 3, 4, 5, 6}),
    ],
)
def test_policies_keep_the_newest_and_the_best(policy: str, kept: set[int]) -> None:
    assert checkpoint_retention.kept_rounds(_metas(ACCURACY), policy) == kept


def test_the_best_is_the_newest_of_equals_and_a_nan_accuracy_is_never_best() -> None:
    assert checkpoint_retention.kept_rounds(_metas({1: 0.8, 2: 0.8, 3: 0.1, 4: 0.2}), "best") == {2, 4}
    assert checkpoint_retention.kept_rounds(_metas({1: 0.3, 2: float("nan"), 3: 0.1}), "best") == {1, 3}


@pytest.mark.parametrize("bad", ["last-0", "last-", "last-10000", "Last-5", "best ", "5", "none"])
def test_other_spellings_are_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"keep-checkpoints": bad})
    assert err.value.key == "keep-checkpoints" and "valid: all, best, last-N" in err.value.reason


def test_the_api_defaults_are_the_apps() -> None:
    assert TrainingConfig().run_settings() == RunSettings()
    assert TrainingConfig(keep_checkpoints="best").validate_domain().to_run_config()["keep-checkpoints"] == "best"


def test_prune_deletes_what_the_policy_drops_and_orphaned_weights(tmp_path: Path) -> None:
    store = tmp_path / "models"
    for r, accuracy in ACCURACY.items():
        state = {"w": torch.full((3,), float(r))}
        checkpoints.save_checkpoint(store, "run", r, state, {"metrics": {"accuracy": accuracy}})
    orphan = store / "run" / "round-0009.safetensors"
    orphan.write_bytes(b"weights whose metadata never got written")
    deleted = checkpoint_retention.prune(store / "run", checkpoints.list_checkpoints(store, "run"), "last-2")
    assert deleted == [checkpoints.model_id("run", r) for r in (1, 3, 4)]
    kept = list(checkpoints.list_checkpoints(store, "run"))
    assert [m["round"] for m in kept] == [2, 5, 6]
    files = sorted(p.name for p in (store / "run").iterdir())
    assert files == [f"round-{r:04d}.{e}" for r in (2, 5, 6) for e in ("json", "safetensors")]
    for meta in kept:
        assert checkpoints.load_state_dict(meta)["w"][0] == meta["round"]  # still verifies (sha256) and loads


def test_a_write_that_hits_a_file_size_limit_leaves_nothing_and_names_the_round(tmp_path: Path) -> None:
    # A real kernel limit (RLIMIT_FSIZE) in a child process: Python ignores SIGXFSZ, so the write fails with EFBIG.
    script = textwrap.dedent(
        f"""
        import resource, torch
        from pathlib import Path
        from flowerbed_app.runtime import checkpoints
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        try:
            checkpoints.save_checkpoint(Path({str(tmp_path)!r}), "run", 3, {{"w": torch.zeros(1 << 20)}}, {{}})
        except checkpoints.CheckpointWriteError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("file too large writing checkpoint round 3 to "), result.stdout + result.stderr
    assert list((tmp_path / "run").iterdir()) == []


def test_a_handler_past_its_deadline_is_stopped() -> None:
    started = time.monotonic()
    with (
        pytest.raises(RoundTimeExceeded, match="train of round 1 still running when its round timed out"),
        deadline(0.3, "train of round 1"),
    ):
        time.sleep(30)
    assert time.monotonic() - started < 5


def test_the_deadline_is_the_servers_within_bounds() -> None:
    assert seconds_left(created_at=100.0, round_timeout=60.0, now=110.0) == 50.0  # the server gives up at 160
    assert seconds_left(created_at=100.0, round_timeout=60.0, now=190.0) == 30.0  # a clock far ahead: half
    assert seconds_left(created_at=100.0, round_timeout=60.0, now=40.0) == 60.0  # a clock behind: at most all
