"""The Flower App a warm executor keeps imported, and what a forked task does with it.

The parent imports the ClientApp module (and with it `flwr` and `torch`) once; every task
is a fork of that parent, so it starts with the imports done and with nothing any other
task did. The app a task must run is the one its run's FAB carries, not whatever was
installed when the parent started: after Flower installs the FAB, the child compares the
FAB's copy of the app package with the preloaded one, file by file, and if they differ it
drops the preloaded modules so that Flower imports the FAB's own code (torch stays warm).

A FAB already installed is not unpacked again for every task (Flower's own ClientApp
finds it installed only after unpacking and checking it).

A task reports to its parent through a pipe: the message it received (so the parent can
answer for it if it dies without replying) and that its reply was pushed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

from flwr.app.message import remove_content_from_message
from flwr.common.config import get_project_dir
from flwr.common.serde import message_to_proto
from flwr.supercore import log, object_ref, telemetry
from flwr.supercore.exit import exit_handler
from flwr.supernode.runtime import run_clientapp as flower_runtime

APP_ENV = "FLOWERBED_CLIENTAPP"
DEFAULT_APP = "flowerbed_app.client_app:app"
THREADS_ENV = "FLOWERBED_TORCH_THREADS"


def package_digest(package_dir: Path) -> dict[str, str]:
    """sha256 of every Python file under a package directory, by relative path."""
    return {
        str(path.relative_to(package_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


@dataclass(frozen=True)
class WarmApp:
    """A ClientApp module imported in the parent, and the source it came from."""

    ref: str
    package: str
    package_dir: Path
    digest: dict[str, str]

    @classmethod
    def load(cls, ref: str) -> WarmApp:
        """Import `module:attribute` now, and run the module's `warm_up()` if it has one (an
        app's chance to initialize what its tasks would each initialize again — without
        starting threads, which the executor checks); raises whatever they raise."""
        module_name, _, attribute = ref.partition(":")
        module = importlib.import_module(module_name)
        if not attribute or not hasattr(module, attribute):
            raise AttributeError(f"{module_name} has no attribute {attribute!r}")
        if callable(warm_up := getattr(module, "warm_up", None)):
            warm_up()
        package = module_name.split(".")[0]
        package_dir = Path(sys.modules[package].__file__ or "").parent
        return cls(ref, package, package_dir, package_digest(package_dir))

    def matches(self, project_dir: Path) -> bool:
        """Whether a FAB installed at `project_dir` carries exactly this app package."""
        fab_package = project_dir / self.package
        return fab_package.is_dir() and package_digest(fab_package) == self.digest

    def forget(self) -> None:
        """Drop the preloaded package, so the next import reads the FAB's copy."""
        for name in [n for n in sys.modules if n == self.package or n.startswith(self.package + ".")]:
            del sys.modules[name]


def check_flower() -> None:
    """Raise if the runtime functions a forked task relies on changed shape."""
    import inspect

    expected = {
        "run_clientapp": ["runtime_api_address", "token", "insecure", "certificates", "parent_pid", "runtime_dependency_install"],
        "pull_task_input": ["client"],
        "push_message": ["client", "message", "context"],
        "push_task_output": ["client", "context", "sub_status", "details"],
        "get_load_client_app_fn": ["default_app_ref", "app_path", "multi_app"],
        "install_from_fab": ["fab_file", "install_dir", "skip_prompt"],
    }
    for name, params in expected.items():
        function = getattr(flower_runtime, name, None)
        if function is None or list(inspect.signature(function).parameters) != params:
            shape = inspect.signature(function) if function else "missing"
            raise RuntimeError(
                f"flowerbed-superexec: Flower's ClientApp runtime changed ({name}{shape}); update flowerbed_node/warm_app.py"
            )


def reset_after_fork() -> None:
    """In the child, before anything else: none of the parent's exit handlers (they would
    close its client and executor), fresh module locks, the task's own thread count."""
    exit_handler.registered_exit_handlers.clear()
    exit_handler._lock_handlers = threading.Lock()
    telemetry.state_lock = threading.Lock()
    object_ref._import_lock = threading.Lock()
    threads = int(os.environ.get(THREADS_ENV, "0") or 0)
    if threads and (torch := sys.modules.get("torch")) is not None:  # an app without torch stays so
        torch.set_num_threads(threads)


def _report(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


def instrument_child(warm: WarmApp | None, report_fd: int) -> None:
    """Patch Flower's ClientApp runtime in this child: report to the parent, and load the
    preloaded app only if the run's FAB carries the same code."""
    pull, push, loader = flower_runtime.pull_task_input, flower_runtime.push_message, flower_runtime.get_load_client_app_fn
    install = flower_runtime.install_from_fab
    task_run: list[Any] = []

    @functools.wraps(pull)
    def pull_task_input(client: Any) -> Any:
        message, context, run, fab = pull(client)
        task_run.append(run)
        metadata = message.metadata
        received = message_to_proto(remove_content_from_message(message)).SerializeToString()
        _report(
            report_fd,
            {
                "received": received.hex(),
                "deadline": metadata.created_at + metadata.ttl,
                "run_id": context.run_id,
                "node_id": context.node_id,
            },
        )
        return message, context, run, fab

    @functools.wraps(push)
    def push_message(client: Any, message: Any, context: Any) -> None:
        _report(report_fd, {"pushing": True})
        push(client, message, context)
        _report(report_fd, {"replied": True})

    @functools.wraps(install)
    def install_from_fab(fab_file: Any, install_dir: Any = None, skip_prompt: bool = False) -> Path:
        """Flower's, without unpacking a FAB that is installed already. Flower unpacks and
        checks every file of it to a temporary directory first (~70 ms per task), then finds
        the directory named by the FAB's own sha256 there and returns it (with
        `skip_prompt`, as a ClientApp installs): that directory was checked when made."""
        if isinstance(fab_file, bytes) and install_dir is None and skip_prompt and task_run:
            installed = get_project_dir(task_run[0].fab_id, task_run[0].fab_version, hashlib.sha256(fab_file).hexdigest())
            if installed.is_dir():
                return installed
        return install(fab_file, install_dir, skip_prompt)

    @functools.wraps(loader)
    def get_load_client_app_fn(*args: Any, **kwargs: Any) -> Callable[[str, str, str], Any]:
        load = loader(*args, **kwargs)

        def load_checked(fab_id: str, fab_version: str, fab_hash: str) -> Any:
            if warm is not None and not warm.matches(get_project_dir(fab_id, fab_version, fab_hash)):
                log(WARNING, "flowerbed-superexec: this run's FAB has other %s code than preloaded; importing it", warm.package)
                warm.forget()
            return load(fab_id, fab_version, fab_hash)

        return load_checked

    flower_runtime.pull_task_input = pull_task_input
    flower_runtime.push_message = push_message
    flower_runtime.get_load_client_app_fn = get_load_client_app_fn
    flower_runtime.install_from_fab = install_from_fab


def run_task(spec: Any, warm: WarmApp | None, report_fd: int) -> int:
    """Flower's own ClientApp runtime for one task, in this (forked) process; its exit code."""
    from flwr.supercore.tls import validate_and_resolve_root_certificates

    reset_after_fork()
    instrument_child(warm, report_fd)
    log(INFO, "Start `flwr-clientapp` task %s (forked from the warm executor)", spec.task_id)
    try:
        flower_runtime.run_clientapp(
            runtime_api_address=spec.runtime_api_address,
            token=spec.token,
            insecure=spec.insecure,
            certificates=validate_and_resolve_root_certificates(spec.root_certificates_path, spec.insecure),
            parent_pid=spec.parent_pid,
            runtime_dependency_install=False,
        )
    except SystemExit as done:  # flwr_exit ends every task with sys.exit
        return done.code if isinstance(done.code, int) else 1
    return 0
