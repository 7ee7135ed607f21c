"""Child processes that end when the process that started them dies, even by SIGKILL.

Local mode starts every Flower process in a session of its own (so that stopping one
ends what it spawned, and a Ctrl-C in the terminal reaches only `flowerbed up`), which
also means nothing reaches them when their owner dies without cleaning up: a
SIGKILLed `flowerbed up`, a test session killed by a CI timeout. Flower's executors
watch their parent (`--parent-pid`); its SuperLink and SuperNodes do not.

Linux's parent-death signal covers every child alike: set in the child between fork and
exec (`preexec_fn`), the kernel sends it SIGTERM when its parent dies, however that
happens. The "parent" is the thread that forked it, so this is only used from the main
thread (whose end is the process's end); elsewhere, and on other systems, children are
started as before and only an orderly stop ends them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # resolved now: the child only calls it
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def leash(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child receives `sig` when this process dies.

    None where that cannot be promised (not Linux, not the main thread): pass it anyway."""
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = _PRCTL, os.getpid()

    def bind_to_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the leash was on: follow it now
            os._exit(1)

    return bind_to_parent
