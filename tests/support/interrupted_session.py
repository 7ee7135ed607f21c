"""A test session to be interrupted: tests/e2e/test_process_cleanup.py runs this file in a pytest
of its own (no `test_` file prefix: `make test` never collects it) and sends it SIGTERM while
its federations run, as a CI timeout would."""

from __future__ import annotations

import os
import time
from pathlib import Path

READY_ENV = "FLOWERBED_INTERRUPT_READY"


def test_holds_federations_until_interrupted(shared_federation, start_federation):
    start_federation(1)
    Path(os.environ[READY_ENV]).write_text("ready")
    time.sleep(600)
