"""Where the project's app lives and where local mode keeps its state.

Local mode keeps everything under one data directory (default `.flowerbed/` in the
working directory) so a user can see, back up or delete it, and so nothing ever
touches the user's own `~/.flwr`.
"""

from __future__ import annotations

import os
from pathlib import Path

import flowerbed_app


def data_dir() -> Path:
    return Path(os.environ.get("FLOWERBED_DATA_DIR") or ".flowerbed").resolve()


def app_dir() -> Path:
    """The Flower App directory (what `flwr build` packs into a FAB)."""
    if env := os.environ.get("FLOWERBED_APP_DIR"):
        return Path(env).resolve()
    return Path(flowerbed_app.__file__).resolve().parent.parent
