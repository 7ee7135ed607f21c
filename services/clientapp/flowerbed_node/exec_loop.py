"""Flower's SuperExec loop, patched in place: a warm ClientApp executor and waits that
follow the work (the body of `flowerbed-superexec`).

Two things differ from Flower's:
- ClientApp tasks are forked from a parent that keeps the Flower App imported
  (`fork_executor.ForkExecutor`); `FLOWERBED_SUPEREXEC_WARM=0` keeps Flower's executor
  (a new `flwr-clientapp` process per task). Which app: `FLOWERBED_CLIENTAPP`
  (`module:attribute`, default the Flowerbed app's ClientApp).
- Flower's loop asks for a task every `FLWR_SUPEREXEC_TASK_POLL_INTERVAL` seconds, busy or
  not. Here that interval applies for a while after a task; with nothing to do the wait
  doubles up to `FLOWERBED_SUPEREXEC_IDLE_POLL_SECONDS`. A Runtime API that holds the
  request until a task exists (`flowerbed-supernode` does) is asked again at once.

The patches target the pinned Flower 1.41 and refuse to start if the functions they
rely on changed shape.
"""

from __future__ import annotations

import inspect
import re
import time
from types import ModuleType
from typing import Any

from flwr.supercore.constant import ExecutorType
from flwr.supercore.superexec import run_superexec as flower_loop
from flwr.supercore.superexec.executor import ExecutionSpec, Executor

from flowerbed_node import warm_app
from flowerbed_node.fork_executor import ForkExecutor
from flowerbed_node.pacing import Pacer

WARM_ENV = "FLOWERBED_SUPEREXEC_WARM"
# On by default: every task still runs in a process of its own (forked), without the
# interpreter start and imports. `FLOWERBED_SUPEREXEC_WARM=0` keeps Flower's executor.
DEFAULT_WARM = "1"
IDLE_POLL_ENV = "FLOWERBED_SUPEREXEC_IDLE_POLL_SECONDS"
KEEP_WARM_ENV = "FLOWERBED_SUPEREXEC_KEEP_WARM_SECONDS"
DEFAULT_IDLE_POLL = 2.0
DEFAULT_KEEP_WARM = 600.0
# An empty answer that took this long was held by the server until it had to answer.
HELD_SECONDS = 1.0


class _PacedTime(ModuleType):
    """`time` as Flower's SuperExec loop sees it: it only sleeps between task polls."""

    def __init__(self, idle: float, executor: Executor | None = None) -> None:
        super().__init__("time")
        self.idle = idle
        self.executor = executor
        self.pacer: Pacer | None = None
        self.woke = time.monotonic()

    def sleep(self, seconds: float) -> None:
        if self.pacer is None:  # Flower's interval is the busy pace
            self.pacer = Pacer(seconds, max(seconds, self.idle))
        if getattr(self.executor, "launched", False):
            self.executor.launched = False  # type: ignore[union-attr]
            self.pacer.mark_busy()
        held = time.monotonic() - self.woke >= HELD_SECONDS
        time.sleep(0.0 if held else self.pacer.next_wait())  # held: the server already waited
        self.woke = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def check_flower() -> None:
    """Raise if a Flower function this relies on changed shape."""
    problems = []
    if set(re.findall(r"\btime\.(\w+)", inspect.getsource(flower_loop))) != {"sleep"}:
        problems.append("run_superexec uses time beyond sleep")
    params = inspect.signature(flower_loop.get_executor).parameters
    if list(params) != ["executor_type", "executor_config", "insecure", "root_certificates_path"]:
        problems.append(f"get_executor{inspect.signature(flower_loop.get_executor)}")
    fields = {"task_type", "runtime_api_address", "token", "insecure", "root_certificates_path", "parent_pid"}
    if not fields <= set(ExecutionSpec.__dataclass_fields__):
        problems.append("ExecutionSpec")
    # fork_executor.answer_for builds its own bounded client from these.
    from flwr.supercore.retry.retry_invoker import RetryInvoker
    from flwr.supercore.runtime import RuntimeHttpClient

    client_params = inspect.signature(RuntimeHttpClient.__init__).parameters
    if "timeout" not in client_params or not hasattr(RuntimeHttpClient, "from_server_address"):
        problems.append(f"RuntimeHttpClient{inspect.signature(RuntimeHttpClient.__init__)}")
    invoker_params = inspect.signature(RetryInvoker.__init__).parameters
    if not {"wait_gen_factory", "recoverable_exceptions", "max_tries", "max_time", "should_giveup"} <= set(invoker_params):
        problems.append(f"RetryInvoker{inspect.signature(RetryInvoker.__init__)}")
    if problems:
        raise RuntimeError(f"flowerbed-superexec: Flower's SuperExec changed ({'; '.join(problems)}); update flowerbed_node")
    warm_app.check_flower()


def install(warm: bool, app_ref: str, idle: float, keep_warm: float) -> None:
    """Patch Flower's SuperExec loop module in place."""
    check_flower()
    flower_get_executor = flower_loop.get_executor
    paced = _PacedTime(idle)

    def get_executor(
        executor_type: ExecutorType,
        executor_config: Any = None,
        *,
        insecure: bool = False,
        root_certificates_path: str | None = None,
    ) -> Executor:
        executor = flower_get_executor(
            executor_type, executor_config, insecure=insecure, root_certificates_path=root_certificates_path
        )
        if warm and executor_type == ExecutorType.SUBPROCESS:
            executor = ForkExecutor(app_ref, keep_warm, fallback=executor)
        paced.executor = executor
        return executor

    flower_loop.get_executor = get_executor
    flower_loop.time = paced
