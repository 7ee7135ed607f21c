"""A Grid that notices replies within a fraction of a second.

Flower's `HttpGrid.send_and_receive` sleeps 3 s between polls, so every message
phase ends on average 1.5 s (up to 3 s) after the last reply arrived. We keep
Flower's grid for everything and only re-implement this loop on top of its public
`push_messages`/`pull_messages`; it also remembers which node each message went to,
so error replies made by the SuperLink can be attributed to the right node, and lists
node ids in a stable order so that seeded node sampling is reproducible.

It is also the first code of ours that sees a reply: an optional `screen(sent, reply)`
(flowerbed_app.strategy.reply_screen) may replace it — e.g. by an error reply for an update
that must not be aggregated — before any strategy does.

A reply's objects can reach the SuperLink a moment after the reply itself (the SuperNode
sends the message, then its objects), and Flower then backs off 1 s before asking for them
again (`PULL_INITIAL_BACKOFF`). Polling every 0.05–0.2 s, that was half of all replies on
a 1-node federation: rounds of 0.35 s or 1.35 s. Our ServerApp starts that back-off at
`OBJECT_PULL_BACKOFF_SECONDS` and doubles it up to `OBJECT_PULL_BACKOFF_CAP_SECONDS` only
(Flower: up to 10 s; doubling from 50 ms still slept up to 0.4 s at once while a 4.8 MB
update was on its way), with no cap on tries: Flower's 2 h `max_time` bounds the wait.

Each message's time-to-live ends shortly after the round (`timeout` + `TTL_GRACE_SECONDS`):
Flower's default is 12 h, but no reply is awaited after the round timeout, and a node's
executor uses the message's deadline to kill a ClientApp that still hangs
(flowerbed_node.fork_executor) so the node is free for the next round. The grace orders
the three ends of a hung ClientApp: the server stops waiting and records "no reply before
round-timeout" (a TTL ending at the same instant would make the SuperLink answer "Message
Unavailable" instead); the handler's own deadline and its watchdog
(flowerbed_app.runtime.handler_deadline) stop it from inside; only then the executor kills it.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.superlink.grid import http_grid

from flowerbed_app.runtime.handler_deadline import GRACE_SECONDS

DEFAULT_POLL_SECONDS = 0.2
TTL_GRACE_SECONDS = GRACE_SECONDS + 5.0
OBJECT_PULL_BACKOFF_SECONDS = 0.05
OBJECT_PULL_BACKOFF_CAP_SECONDS = 0.25
Screen = Callable[[Message, Message], Message]


def quicken_object_pulls() -> bool:
    """The ServerApp's object-pull back-off from 50 ms to 0.25 s; False if Flower's function
    changed shape (its own 1–10 s pace is kept then: slower, never wrong). Idempotent."""
    pull = http_grid.pull_objects
    if isinstance(pull, functools.partial):
        return True
    if not {"initial_backoff", "backoff_cap", "max_tries_per_object"} <= set(inspect.signature(pull).parameters):
        return False
    http_grid.pull_objects = functools.partial(
        pull,
        initial_backoff=OBJECT_PULL_BACKOFF_SECONDS,
        backoff_cap=OBJECT_PULL_BACKOFF_CAP_SECONDS,
        max_tries_per_object=None,
    )
    return True


class FastPollGrid:
    """Delegates to a Flower Grid; overrides `send_and_receive` and orders `get_node_ids`."""

    def __init__(
        self,
        grid: Grid,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        screen: Screen | None = None,
        allowed: set[int] | None = None,
    ) -> None:
        self._grid = grid
        quicken_object_pulls()
        self.poll_seconds = poll_seconds
        self.screen = screen
        self.destinations: dict[str, int] = {}
        # Nodes the run may address (None: all): a data-source=node run leaves out the nodes
        # without usable data, and nodes that joined after the data survey.
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        """Sorted: Flower samples nodes from this list with `random`, so a seeded run
        picks the same nodes only if the list comes in the same order every time."""
        nodes = sorted(self._grid.get_node_ids())
        return nodes if self.allowed is None else [n for n in nodes if n in self.allowed]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if timeout is not None:
            for message in messages:  # expire once this round has stopped waiting for the reply
                message.metadata.ttl = time.time() - message.metadata.created_at + timeout + TTL_GRACE_SECONDS
        ids = list(self._grid.push_messages(messages))
        sent = dict(zip(ids, messages, strict=False))
        self.destinations.update({mid: int(m.metadata.dst_node_id) for mid, m in sent.items()})
        pending = set(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            batch = list(self._grid.pull_messages(pending))
            if self.screen is not None:
                batch = [self._screened(sent.get(m.metadata.reply_to_message_id), m) for m in batch]
            replies.extend(batch)
            pending.difference_update(m.metadata.reply_to_message_id for m in batch)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_seconds)
        return replies

    def _screened(self, message: Message | None, reply: Message) -> Message:
        return reply if message is None or self.screen is None else self.screen(message, reply)
