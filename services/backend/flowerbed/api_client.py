"""The Python client of Flowerbed's REST API: the `flowerbed train` CLI, the tests and the benchmarks use it.

One place for how a caller reaches the API: the bearer token, the base URL and timeouts,
the run endpoints (start, detail, stop) and the run's event stream, followed across
reconnects until the run ends. Responses are handed back as they are (status codes
included), so each caller decides what a 422 or a 409 means to it. The stream's format is
sse.py's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx

from flowerbed import sse
from flowerbed.runs.run_status import TERMINAL_STATUSES


def connect(base_url: str, token: str, **kwargs: Any) -> httpx.Client:
    """A client that sends the API token with every request (60 s timeout unless `timeout=` says otherwise)."""
    options: dict[str, Any] = {"timeout": 60.0, **kwargs}
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, **options)


def start_run(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """POST /training/start: 202 with the run, 422 naming each bad field, 429 at the cap on active runs."""
    return client.post("/training/start", json=body)


def run_detail(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """GET /training/{run_id}: the run's status, rounds, accuracy and error."""
    response = client.get(f"/training/{run_id}")
    response.raise_for_status()
    return response.json()


def stop_run(client: httpx.Client, run_id: str) -> httpx.Response:
    """POST /training/{run_id}/stop."""
    return client.post(f"/training/{run_id}/stop")


@contextlib.contextmanager
def event_stream(
    client: httpx.Client, run_id: str, last_event_id: int | None = None, timeout: float = 60.0
) -> Iterator[httpx.Response]:
    """One connection to the run's event stream, resuming after `last_event_id`; read it with `sse.parse`."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with client.stream("GET", f"/training/{run_id}/events", headers=headers, timeout=httpx.Timeout(timeout, read=60)) as response:
        yield response


def follow_events(client: httpx.Client, run_id: str) -> Iterator[sse.Event]:
    """The run's events until its final status; reconnects with Last-Event-ID when the stream is cut."""
    last = 0
    while True:
        try:
            with event_stream(client, run_id, last) as response:
                response.raise_for_status()
                for event in sse.parse(response.iter_lines()):
                    if event.id is not None:
                        last = event.id
                    yield event
                    if event.event == "status" and event.data.get("status") in TERMINAL_STATUSES:
                        return
            return
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ConnectError):
            time.sleep(1.0)  # backend restarting or a proxy cut the stream: resume after `last`
