"""One lock for everything: what `make setup` installed is exactly requirements.lock (+ the dev lock).

The images install the same requirements.lock (tests/e2e/test_compose_stack.py compares each built image
with it); here the local venv is compared, so local mode and the images cannot drift apart.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {name.lower().replace("_", "-"): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_every_locked_package_is_installed_at_its_locked_version() -> None:
    locked = pins(ROOT / "requirements.lock") | pins(ROOT / "requirements-dev.lock")
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert not wrong, f"the venv differs from the lock (name: (locked, installed)); run `make setup`: {wrong}"


def test_the_lock_pins_every_direct_requirement_with_hashes() -> None:
    lock_text = (ROOT / "requirements.lock").read_text()
    locked = pins(ROOT / "requirements.lock")
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if m:
            name = m.group(1).lower().replace("_", "-")
            assert locked.get(name, "").split("+")[0] == m.group(2), (
                f"{name}: requirements.txt {m.group(2)}, lock {locked.get(name)}"
            )
    # Every pinned entry carries at least one hash (pip's --require-hashes needs them all).
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock_text.strip())
    assert all("--hash=sha256:" in e for e in entries if "==" in e)
