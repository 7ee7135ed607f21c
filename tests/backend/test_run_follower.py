"""Units of the log follower: lines split across chunks are put back together (real federations: test_faults)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flowerbed.flower_control import FlowerRun
from flowerbed.runs.run_follower import LogCursor, follow
from flowerbed_app.runtime.progress_events import PREFIX


def _line(seq: int, event: str) -> str:
    return PREFIX + json.dumps({"v": 1, "event": event, "seq": seq, "run_id": "r", "flower_run_id": 1}) + "\n"


class ChunkedLog:
    """Stands in for the Control API: the log in fixed chunks, then a finished run."""

    def __init__(self, text: str, size: int) -> None:
        self.chunks = [(text[i : i + size], float(n + 1)) for n, i in enumerate(range(0, len(text), size))]

    def stream_logs(self, run_id: int, after_timestamp: float = 0.0) -> Iterator[tuple[str, float]]:
        yield from ((text, ts) for text, ts in self.chunks if ts > after_timestamp)

    def get_run(self, run_id: int) -> FlowerRun:
        return FlowerRun(run_id, "finished", "completed", 0, 0, "", "", "")


def test_every_event_survives_any_chunking_and_a_restart_between_chunks() -> None:
    text = "".join(_line(i, "round_finished") for i in range(1, 6)) + _line(6, "run_finished").rstrip("\n")
    for size in (1, 7, 50, len(text)):
        log = ChunkedLog(text, size)
        events: list[dict] = []
        stored: list[tuple[str, float, str]] = []
        cursor = LogCursor()
        # Read three chunks, then "restart" from what was stored: the cursor and the unfinished line.
        first = ChunkedLog.__new__(ChunkedLog)
        first.chunks = log.chunks[:3]
        for text_part, latest in first.stream_logs(1):
            found, complete = cursor.feed(text_part, latest)
            events += found
            stored.append((complete, cursor.after_timestamp, cursor.partial))
        resumed = LogCursor(after_timestamp=stored[-1][1], partial=stored[-1][2])
        follow(log, 1, events.append, cursor=resumed)  # type: ignore[arg-type]
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6], size
        assert resumed.partial == ""  # the unterminated last line was taken as complete once the run ended
