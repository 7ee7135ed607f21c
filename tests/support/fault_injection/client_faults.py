"""Test-only faults for chosen partitions' ClientApps: bad updates, and ClientApps that hang.

`fault_env({2: "nan", 3: "garbage"}, directory)` is the environment a test federation
needs (`start_federation(extra_env=...)`): this directory on PYTHONPATH, so that
`sitecustomize` wraps the ClientApp module in every ClientApp process, and which
partition misbehaves how. The wrapper runs the real training and then spoils its reply,
or hangs inside the real handler (inside its deadline), as an untrusted or broken node
would. A fault ending in `-once` happens on that partition's first message only
(markers in the fault directory, which also receives a hung ClientApp's pid).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message

FAULTS_ENV = "FLOWERBED_TEST_FAULTS"
FAULT_DIR_ENV = "FLOWERBED_TEST_FAULT_DIR"
HERE = Path(__file__).resolve().parent


def fault_env(faults: dict[int, str], fault_dir: Path) -> dict[str, str]:
    """Environment for a federation whose partition p answers with fault `faults[p]`."""
    fault_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        FAULTS_ENV: ",".join(f"{partition}={fault}" for partition, fault in faults.items()),
        FAULT_DIR_ENV: str(fault_dir),
    }


def hung_pid(fault_dir: Path, fault: str, partition: int) -> int | None:
    """Pid of the ClientApp that hung with `fault` on `partition`, once it has."""
    path = fault_dir / f"{fault}-{partition}.pid"
    return int(path.read_text()) if path.is_file() else None


def _first_float(record: ArrayRecord) -> tuple[str, np.ndarray]:
    for name, array in record.items():
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            return name, values.copy()
    raise AssertionError("no float array in the reply")


def _nan(record: ArrayRecord, server_round: int) -> None:
    name, values = _first_float(record)
    values.flat[0] = np.nan
    record[name] = Array(values)


def _inf(record: ArrayRecord, server_round: int) -> None:
    name, values = _first_float(record)
    values.flat[-1] = np.inf
    record[name] = Array(values)


def _wrong_shape(record: ArrayRecord, server_round: int) -> None:
    name, values = _first_float(record)
    record[name] = Array(np.ascontiguousarray(values.reshape(-1)[:-1]))


def _wrong_dtype(record: ArrayRecord, server_round: int) -> None:
    name, values = _first_float(record)
    record[name] = Array(values.astype(np.float64))


def _missing_array(record: ArrayRecord, server_round: int) -> None:
    del record[_first_float(record)[0]]


def _extra_array(record: ArrayRecord, server_round: int) -> None:
    record["fault.extra"] = Array(np.zeros(4, dtype=np.float32))


def _garbage(record: ArrayRecord, server_round: int) -> None:
    """Random bytes where an array's .npy payload belongs (header included)."""
    name = _first_float(record)[0]
    old = record[name]
    record[name] = Array(dtype=old.dtype, shape=old.shape, stype=old.stype, data=os.urandom(len(old.data)))


def _byzantine(record: ArrayRecord, server_round: int) -> None:
    """Random weights of the right shapes and a large magnitude: valid, finite, and harmful."""
    rng = np.random.default_rng(server_round)
    for name, array in list(record.items()):
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            record[name] = Array((rng.standard_normal(values.shape) * 50.0).astype(values.dtype))


def _overflow(record: ArrayRecord, server_round: int) -> None:
    """Finite weights near float32's largest value: valid, and the average is still finite."""
    for name, array in list(record.items()):
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            record[name] = Array(np.full(values.shape, 3e38, dtype=values.dtype))


ARRAY_FAULTS: dict[str, Callable[[ArrayRecord, int], None]] = {
    "nan": _nan,
    "inf": _inf,
    "wrong-shape": _wrong_shape,
    "wrong-dtype": _wrong_dtype,
    "missing-array": _missing_array,
    "extra-array": _extra_array,
    "garbage": _garbage,
    "byzantine": _byzantine,
    "overflow": _overflow,
}


def _hang_in_python() -> None:
    while True:
        time.sleep(3600)


def _hang_in_c() -> None:
    """A deadlock inside a C call that holds the GIL: no Python code of this process runs again."""
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL is not released during the call
    mutex = ctypes.create_string_buffer(64)  # zeroed: a default (non-recursive) glibc mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # never returns


HANGS: dict[str, Callable[[], None]] = {"hang": _hang_in_python, "hang-in-c": _hang_in_c}


def _faults() -> dict[int, str]:
    entries = [e.split("=", 1) for e in os.environ.get(FAULTS_ENV, "").split(",") if "=" in e]
    return {int(partition): fault.strip() for partition, fault in entries}


def _first_time(fault: str, partition: int) -> bool:
    marker = Path(os.environ[FAULT_DIR_ENV]) / f"{fault}-{partition}.done"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def install(module: ModuleType) -> None:
    """Wrap the ClientApp module's training step (called inside the handler and its deadline)."""
    real_train = module._train

    def faulty_train(msg: Message, context: Any, settings: Any, server_round: int, *args: Any) -> Message:
        partition = int(context.node_config["partition-id"])
        fault = _faults().get(partition, "")
        name = fault.removesuffix("-once")
        if not fault or (fault.endswith("-once") and not _first_time(name, partition)):
            return real_train(msg, context, settings, server_round, *args)
        if name in HANGS:
            (Path(os.environ[FAULT_DIR_ENV]) / f"{name}-{partition}.pid").write_text(str(os.getpid()))
            HANGS[name]()
        reply = real_train(msg, context, settings, server_round, *args)
        if name == "huge-count":
            reply.content["metrics"]["num-examples"] = 10**9
        else:
            ARRAY_FAULTS[name](reply.content["arrays"], server_round)
        reply.content["client"]["fault"] = name
        return reply

    module._train = faulty_train
