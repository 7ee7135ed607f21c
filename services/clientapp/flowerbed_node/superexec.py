"""`flowerbed-superexec`: Flower's `flower-superexec` — same flags, same loop — whose
ClientApp tasks are forked from a warm parent and whose polling follows the work.

Settings (environment): `FLOWERBED_SUPEREXEC_WARM=0` keeps Flower's executor (a new
`flwr-clientapp` process per task); `FLOWERBED_CLIENTAPP` names the ClientApp to keep
imported (`module:attribute`, default the Flowerbed app's); `FLOWERBED_SUPEREXEC_IDLE_POLL_SECONDS`
is the longest wait between task polls when idle; `FLOWERBED_SUPEREXEC_KEEP_WARM_SECONDS`
how long the parent stays warm without a task (0: always). See exec_loop.py.
"""

from __future__ import annotations

import os


def main() -> None:
    # Before numpy is imported (flwr imports it): its OpenBLAS would start a thread pool in
    # the parent that every task is forked from. Tasks compute in torch, with their own
    # thread settings.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from flwr.supercore.cli import flower_superexec

    from flowerbed_node import exec_loop, warm_app
    from flowerbed_node.pacing import seconds_from_env

    idle = seconds_from_env(exec_loop.IDLE_POLL_ENV, exec_loop.DEFAULT_IDLE_POLL)
    keep_warm = seconds_from_env(exec_loop.KEEP_WARM_ENV, exec_loop.DEFAULT_KEEP_WARM, low=0.0, high=86_400.0)
    assert idle is not None and keep_warm is not None
    warm = os.environ.get(exec_loop.WARM_ENV, exec_loop.DEFAULT_WARM) not in ("0", "false", "no")
    exec_loop.install(warm, os.environ.get(warm_app.APP_ENV) or warm_app.DEFAULT_APP, idle, keep_warm)
    flower_superexec()


if __name__ == "__main__":
    main()
