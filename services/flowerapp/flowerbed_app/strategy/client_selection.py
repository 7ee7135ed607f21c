"""Performance-based client selection with exploration (ε-greedy over staleness).

Each node is scored from its last train reply: the validation loss of the global
model it received (lower is better, so score = −loss). A round's picks are the top
scorers, except that an `explore` share of the slots goes to the nodes selected
least recently (never-scored nodes first, ties broken at random). So every node is
picked at least once within `starvation_bound(...)` rounds, whatever its score.

Pure policy: no Flower types. The strategy wrapper feeds it node ids and scores and
re-addresses Flower's messages to the nodes it returns.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    chosen: list[int]
    explored: list[int]  # the part of `chosen` picked for exploration, not for its score


def explore_slots(k: int, available: int, explore: float) -> int:
    """Slots per round given to exploration: at least one whenever someone is left out."""
    if k >= available:
        return 0
    return min(k, max(1, math.ceil(explore * k)))


def starvation_bound(num_nodes: int, k: int, explore: float) -> int:
    """Rounds within which every node is selected at least once."""
    slots = explore_slots(k, num_nodes, explore)
    if slots == 0:
        return 1
    # A node outside the top (k − slots) climbs the staleness order by ≥ slots per round.
    return math.ceil((num_nodes - (k - slots)) / slots)


def select(
    nodes: Sequence[int],
    k: int,
    scores: Mapping[int, float],
    last_selected: Mapping[int, int],
    explore: float,
    rng: random.Random,
) -> Selection:
    """Pick `k` of `nodes`: the best scores plus the stalest nodes for exploration."""
    nodes = list(nodes)
    k = min(k, len(nodes))
    slots = explore_slots(k, len(nodes), explore)
    tie = {node: rng.random() for node in nodes}
    scored = sorted((n for n in nodes if n in scores), key=lambda n: (-scores[n], tie[n]))
    exploit = scored[: k - slots]
    rest = [n for n in nodes if n not in exploit]
    stalest = sorted(rest, key=lambda n: (last_selected.get(n, -1), n in scores, tie[n]))
    explored = stalest[:slots]
    if len(exploit) < k - slots:  # fewer scored nodes than exploit slots: fill with the stalest
        explored = stalest[: k - len(exploit)]
    return Selection(chosen=exploit + explored, explored=explored)
