"""`flowerbed.sse.parse`, the one reader of the run event stream (CLI and tests), on the backend's own format."""

from __future__ import annotations

from flowerbed import sse
from flowerbed.api.routes.training import _format  # what the backend writes


def test_events_comments_and_an_unfinished_tail() -> None:
    lines = [
        ": keep-alive",
        "",
        "id: 1",
        "event: round_started",
        'data: {"round": 1}',
        "",
        ": keep-alive",
        "",
        "id: 2",
        "event: status",
        'data: {"status": "completed"}',
        "",
        "id: 3",
        "event: cut",
        'data: {"never": "finished"}',
    ]
    events = list(sse.parse(lines))
    assert events == [
        sse.Event("round_started", {"round": 1}, 1),
        sse.Event("status", {"status": "completed"}, 2),
    ]


def test_data_split_over_lines_is_one_json_document() -> None:
    events = list(sse.parse(["event: x", 'data: {"a":', "data: 1}", ""]))
    assert events == [sse.Event("x", {"a": 1}, None)]


def test_reads_what_the_backend_writes() -> None:
    class Stored:
        seq, type, data = 7, "client_done", {"node": "3", "loss": 0.5}

    text = _format(Stored())  # type: ignore[arg-type]
    assert list(sse.parse(text.split("\n"))) == [sse.Event("client_done", {"node": "3", "loss": 0.5}, 7)]
