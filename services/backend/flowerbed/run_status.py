"""The run statuses, listed once: the database, the API's enums, the CLI and the tracker use these.

Light on purpose (no SQLAlchemy): `flowerbed train` imports it.
"""

from __future__ import annotations

from typing import Literal

TERMINAL_STATUSES = ("completed", "failed", "stopped")
RESUMABLE_STATUSES = ("failed", "stopped")
RUN_STATUSES = ("pending", "running", *TERMINAL_STATUSES)
RunStatus = Literal[RUN_STATUSES]  # type: ignore[valid-type]
