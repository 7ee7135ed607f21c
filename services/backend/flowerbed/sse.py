"""Reading the run event stream (`GET /training/{run_id}/events`, Server-Sent Events).

One parser for every reader in Python — api_client.py, used by the `flowerbed train` CLI and the tests — so that
the stream's format is read the same way everywhere. By hand rather than with `httpx-sse`:
what the backend writes is `id`, `event` and one JSON `data` line per event plus comment
keep-alives, a dozen lines to read, not worth a dependency of the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One event of the stream: its type, its JSON data, and its id (the Last-Event-ID to resume after)."""

    event: str
    data: Any
    id: int | None = None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines as they arrive (e.g. `response.iter_lines()`); comments are skipped."""
    kind, data, event_id = "message", [], None
    for line in lines:
        if line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line:
            if data:
                yield Event(kind, json.loads("\n".join(data)), event_id)
            kind, data, event_id = "message", [], None
