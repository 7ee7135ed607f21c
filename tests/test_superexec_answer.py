"""The warm parent's answer for a task whose ClientApp died: a refusal is final and never
ends the SuperExec (Flower's own retry invoker SIGINTs its process on a 401).

The node's ClientAppIo endpoint is played by a small HTTP server on 127.0.0.1 that answers
every call with one status: 401 is what a SuperNode answers once the task's token is
revoked. The real path — a stopped run's refused reply, with real processes — is in
tests/test_supernode.py.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flwr.app import Message, Metadata, RecordDict
from flwr.common.serde import message_to_proto
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec

from flowerbed_node import fork_executor


@contextmanager
def endpoint(status: int) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every POST with `status`; yields its address and the paths it was asked for."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()


def _child(address: str) -> fork_executor.Child:
    metadata = Metadata(
        run_id=3,
        message_id="m" * 64,
        src_node_id=1,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=600.0,
        message_type="train",
    )
    received = Message(RecordDict(), metadata=metadata)
    spec = ExecutionSpec(
        task_type=TaskType.CLIENT_APP,
        runtime_api_address=address,
        token="t" * 32,
        insecure=True,
        root_certificates_path=None,
        runtime_dependency_install=False,
        parent_pid=None,
        suppress_output=True,
        task_id=1,
    )
    proto = message_to_proto(received).SerializeToString()
    return fork_executor.Child(spec=spec, reports=-1, message=proto.hex(), run_id=3, node_id=7)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_answer_is_given_up_at_once_and_does_not_interrupt_the_process(status: int) -> None:
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda sig, _frame: interrupted.append(sig))
    try:
        with endpoint(status) as (address, seen):
            started = time.monotonic()
            fork_executor.answer_for(_child(address), "ClientApp exited with code -6")
            took = time.monotonic() - started
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not interrupted, "answering for a task sent SIGINT to its own process (the SuperExec)"
    assert len(seen) == 1, f"a refusal is final: asked {seen}"
    assert took < fork_executor.ANSWER_SECONDS, f"gave up only after {took:.1f}s"


def test_an_unavailable_node_is_retried_until_the_deadline_and_no_longer() -> None:
    with endpoint(503) as (address, seen):
        started = time.monotonic()
        fork_executor.answer_for(_child(address), "ClientApp exited with code -6")
        took = time.monotonic() - started
    assert len(seen) > 1, "503 is retryable"
    assert took <= fork_executor.ANSWER_SECONDS + fork_executor.REQUEST_SECONDS + 2, f"took {took:.1f}s"
