"""`make test`'s two pytest sessions split the suite: every collected test runs in exactly one of them.

The Makefile runs `-m "$(ALONGSIDE_TESTS)"` beside `-m "not ($(ALONGSIDE_TESTS))"`. A test in neither
would never run in CI; a test in both would run twice at the same time. A module split between the two
would build its module fixtures (federations, backends) in both at once, so modules move whole. The
expressions are read from the Makefile's `test` recipe and given to pytest's own `-m`: this checks what
CI runs, not a copy of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Two collections of the whole suite (tens of seconds on a loaded machine): in the session with slack.
pytestmark = pytest.mark.alongside


def session_expressions(makefile: str) -> tuple[str, str]:
    """The `-m` expressions of `make test`'s two pytest sessions, ALONGSIDE_TESTS substituted."""
    (alongside,) = re.findall(r"^ALONGSIDE_TESTS := (.+)$", makefile, re.M)
    recipe = makefile.split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    selections = re.findall(r'pytest -m "([^"]+)"', recipe)
    assert len(selections) == 2, f"expected two pytest sessions in the test recipe, found {selections}"
    first, second = (s.replace("$(ALONGSIDE_TESTS)", alongside) for s in selections)
    return first, second


def selected(expression: str) -> tuple[list[str], int]:
    """(node ids pytest selects with `-m expression`, how many tests it collected in all); fails on a collection error."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", expression],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"pytest --collect-only -m {expression!r} exited {result.returncode}:\n{result.stdout[-3000:]}"
    ids = result.stdout.split("\n\n", 1)[0].splitlines()
    assert ids and all("::" in line for line in ids), result.stdout[-3000:]
    summary = re.search(r"^(\d+)/(\d+) tests? collected \((\d+) deselected\)", result.stdout, re.M)
    assert summary and int(summary[1]) == len(ids), result.stdout[-3000:]
    return ids, int(summary[2])


def test_the_two_sessions_of_make_test_partition_the_collected_tests() -> None:
    alongside_expr, main_expr = session_expressions((ROOT / "Makefile").read_text())
    (alongside, total), (main, total_again) = selected(alongside_expr), selected(main_expr)
    assert total == total_again
    # Both are subsets of the same `total` tests: disjoint and adding up to it means each test is in exactly one.
    assert not set(alongside) & set(main), f"in both sessions: {sorted(set(alongside) & set(main))}"
    assert len(set(alongside)) + len(set(main)) == total, f"{total - len(alongside) - len(main)} tests are in neither session"
    modules = {node.split("::", 1)[0] for node in alongside} & {node.split("::", 1)[0] for node in main}
    assert not modules, f"modules split between the two sessions (move a module whole): {sorted(modules)}"
