"""A SuperExec executor that forks each ClientApp task from a warm parent.

Flower's `SubprocessExecutor` starts `flwr-clientapp` for every task: a new interpreter
that imports `flwr`, `torch` and the app (~1.3 s of CPU) before the first batch. This
executor forks one child per task; the child runs Flower's own ClientApp runtime with the
task's token. Right after forking its first task (which imports the app itself) the
parent imports the app and runs its warm-up (`WarmApp`), so every later task starts warm. Every task is
still a process of its own — its crash, its leak, its state die with it — and the parent
never runs a task, so every child starts from the same state.

The parent also answers for children that cannot: one killed by a signal (segfault,
abort, the OOM killer) or one still running past its message's deadline (`created_at +
ttl`; our ServerApp sets the ttl to its round timeout plus a grace), which it kills. For either it
pushes the error reply Flower's runtime would have pushed (`CLIENT_APP_CRASHED`) with the
task's token, so the SuperNode records that node's failure now — not when the task's
heartbeat expires a minute later, or never for a hung task — and pulls its next message.

Tasks of other types, runs that install dependencies at run time, and — once preloading
it failed — an app that cannot be preloaded go to Flower's own executor. After `keep_warm` seconds without a task the
parent re-executes itself cold, so an idle node does not hold torch's memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from logging import ERROR, INFO, WARNING
from typing import Any

from flwr.supercore import log
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec, Executor, LaunchResult

from flowerbed_node.warm_app import WarmApp, run_task


@dataclass
class Child:
    spec: ExecutionSpec
    reports: int  # read end of the child's report pipe
    pending: bytes = b""
    message: str = ""  # the received message (hex of its content-less proto)
    run_id: int = 0
    node_id: int = 0
    deadline: float = 0.0
    replied: bool = False
    pushing: bool = False  # it tried to push its reply
    killed: str = ""


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


class ForkExecutor:
    """Flower's `Executor` protocol; forks ClientApp tasks, delegates the rest."""

    def __init__(self, app_ref: str, keep_warm: float, fallback: Executor) -> None:
        self.app_ref = app_ref
        self.keep_warm = keep_warm
        self.fallback = fallback
        self.warm: WarmApp | None = None
        self.preload_failed = False
        self.children: dict[int, Child] = {}
        self.last_task = time.monotonic()
        self.launched = False  # since the loop last asked (superexec's pacing reads it)

    def get_eligible_capacity(
        self, supported_task_types: set[TaskType], *, insecure: bool = False, root_certificates_path: str | None = None
    ) -> tuple[set[TaskType], set[str]]:
        return self.fallback.get_eligible_capacity(
            supported_task_types, insecure=insecure, root_certificates_path=root_certificates_path
        )

    def wait_for_capacity(self, task_type: TaskType | None = None, **kwargs: Any) -> None:
        self.fallback.wait_for_capacity(task_type, **kwargs)

    def warm_up(self) -> bool:
        """Import the app now if not yet; False (and Flower's path) if it cannot be."""
        if self.warm is None and not self.preload_failed:
            started, threads = time.perf_counter(), thread_count()
            try:
                self.warm = WarmApp.load(self.app_ref)
            except Exception as exc:  # any import failure means Flower's path
                self.preload_failed = True
                log(
                    ERROR,
                    "flowerbed-superexec: cannot preload %s (%r); every ClientApp starts the way Flower starts it",
                    self.app_ref,
                    exc,
                )
                return False
            log(INFO, "flowerbed-superexec: preloaded %s in %.2f s", self.app_ref, time.perf_counter() - started)
            if (extra := thread_count() - threads) > 0:
                log(WARNING, "flowerbed-superexec: preloading started %d thread(s); tasks fork beside them", extra)
        return self.warm is not None

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        self.launched, self.last_task = True, time.monotonic()
        if spec.task_type != TaskType.CLIENT_APP or spec.runtime_dependency_install or self.preload_failed:
            return self.fallback.launch(spec)
        result = self._fork(spec)
        if self.warm is None:
            # After forking: the first task imports the app itself rather than wait while the
            # token Flower gave it ages (it must start within 30 s; warming can take longer).
            self.warm_up()
        return result

    def _fork(self, spec: ExecutionSpec) -> LaunchResult:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the task: never returns into the parent's loop
            code = 1
            try:
                os.close(read)
                if spec.suppress_output:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                code = run_task(spec, self.warm, write)
            except BaseException:  # report and leave, whatever happened
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(write)
        os.set_blocking(read, False)
        self.children[pid] = Child(spec, read)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Between polls: read reports, kill tasks past their deadline, reap, cool down."""
        for pid, child in list(self.children.items()):
            try:
                self._reconcile_child(pid, child)
            except Exception as exc:  # one task's trouble must not stop the node's next task
                self.children.pop(pid, None)
                log(ERROR, "flowerbed-superexec: task %s: %r; serving the next task", child.spec.task_id, exc)
        if self.warm and not self.children and self.keep_warm and time.monotonic() - self.last_task > self.keep_warm:
            self._cool_down()
        self.fallback.reconcile()

    def _reconcile_child(self, pid: int, child: Child) -> None:
        self._read(child)
        if child.deadline and not child.killed and time.time() > child.deadline:
            child.killed = "ClientApp still running at its message's deadline (round timeout): killed"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            del self.children[pid]
            self._read(child)
            os.close(child.reports)
            self._finished(child, status)

    def close(self) -> None:
        """Children watch this process (Flower's --parent-pid monitor) and stop with it."""
        for child in self.children.values():
            with contextlib.suppress(OSError):
                os.close(child.reports)
        self.children.clear()
        self.fallback.close()

    def _read(self, child: Child) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(child.reports, 65536):
                child.pending += chunk
        *lines, child.pending = child.pending.split(b"\n")
        for line in lines:
            record = json.loads(line)
            if "received" in record:
                child.message, child.deadline = record["received"], float(record["deadline"])
                child.run_id, child.node_id = int(record["run_id"]), int(record["node_id"])
            child.replied = child.replied or bool(record.get("replied"))
            child.pushing = child.pushing or bool(record.get("pushing"))

    def _finished(self, child: Child, status: int) -> None:
        if os.WIFSIGNALED(status):
            reason = child.killed or f"ClientApp process died of {signal.Signals(os.WTERMSIG(status)).name}"
        elif child.replied:
            return  # its reply (a result, or Flower's error reply for an exception) is out
        elif child.pushing:
            # Its push was refused (e.g. its run was stopped) and Flower's runtime, on its way
            # out, closed the task (which revokes its token): nothing more can be said for it.
            log(WARNING, "flowerbed-superexec: task %s: its reply could not be pushed; the task is closed", child.spec.task_id)
            return
        else:
            reason = f"ClientApp process exited with code {os.WEXITSTATUS(status)} without replying"
        log(WARNING, "flowerbed-superexec: task %s: %s", child.spec.task_id, reason)
        if child.message and not child.replied:
            answer_for(child, reason)

    def _cool_down(self) -> None:
        log(INFO, "flowerbed-superexec: no task for %.0f s; restarting cold to free the preloaded app", self.keep_warm)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


# Answering for a task is best effort and must never stall or stop the loop that serves the
# node's next task: one deadline for the whole answer, a short timeout per request.
ANSWER_SECONDS = 10.0
REQUEST_SECONDS = 5.0
_RETRYABLE = frozenset({502, 503, 504})


def answer_for(child: Child, reason: str) -> None:
    """Push, with the task's token, the error reply its ClientApp could not send.

    Not with Flower's retry invoker: on a refused token (401) it sends SIGINT to its own
    process — right for a ClientApp, whose token is its life, but here that process is
    the SuperExec, which then exits and no later task of the node is started. A refusal
    (401: the task is already closed; 403: its run is no longer running) is final: give up.
    """
    import httpx
    from flwr.app import Context, Error, Message, RecordDict
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as MessageProto  # pylint: disable=E0611
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.retry.retry_invoker import RetryInvoker, exponential
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.tls import validate_and_resolve_root_certificates
    from flwr.supernode.runtime import run_clientapp as flower_runtime

    deadline = time.monotonic() + ANSWER_SECONDS

    def refused(exc: Exception) -> bool:
        return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code not in _RETRYABLE

    class BoundedClient(RuntimeHttpClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "timeout": REQUEST_SECONDS})

    spec = child.spec
    received = MessageProto()
    received.ParseFromString(bytes.fromhex(child.message))
    reply = Message(Error(code=ErrorCode.CLIENT_APP_CRASHED, reason=reason), reply_to=message_from_proto(received))
    invoker = RetryInvoker(
        wait_gen_factory=lambda: exponential(base_delay=0.2, max_delay=1),
        recoverable_exceptions=(httpx.TransportError, httpx.HTTPStatusError),
        max_tries=None,
        max_time=ANSWER_SECONDS,
        should_giveup=lambda exc: refused(exc) or time.monotonic() >= deadline,
    )
    client = BoundedClient.from_server_address(
        server_address=spec.runtime_api_address,
        insecure=spec.insecure,
        root_certificates=validate_and_resolve_root_certificates(spec.root_certificates_path, spec.insecure),
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), RuntimeTokenHttpInterceptor(spec.token)],
        retry_invoker=invoker,
    )
    context = Context(run_id=child.run_id, node_id=child.node_id, node_config={}, state=RecordDict(), run_config={})
    try:
        flower_runtime.push_message(client, reply, context)
        if time.monotonic() < deadline:
            flower_runtime.push_task_output(client, None, SubStatus.FAILED, reason)
    except Exception as exc:  # the task's heartbeat expiry is Flower's fallback
        if refused(exc):
            log(WARNING, "flowerbed-superexec: task %s's failure not reported: %s", spec.task_id, exc)
        else:
            log(ERROR, "flowerbed-superexec: could not report task %s's failure: %r", spec.task_id, exc)
    finally:
        client.close()
