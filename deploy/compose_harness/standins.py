"""Stand-ins for third-party base images, built from Debian packages when no registry is reachable.

Every stand-in is tagged under `PREFIX` (never `postgres:…`, `nginx:…`: a later user of the machine
must not mistake them for the real images). The Debian root comes from `debootstrap`, pointed at the
machine's own apt mirror; the other stand-ins are small Dockerfiles in deploy/standins/, whose
layers the engine caches, so a warm call costs seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compose_harness.engine import run

PREFIX = "flowerbed-standin"
ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "deploy" / "standins"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN = f"{PREFIX}/debian:bookworm"
SUITE = "bookworm"
# Every image the harness builds carries it (our Dockerfiles set it too): see prune_dangling().
LABEL = "org.flowerbed.project"


@dataclass(frozen=True)
class Standin:
    name: str
    tag: str
    replaces: str  # the real image it stands in for

    @property
    def image(self) -> str:
        return f"{PREFIX}/{self.name}:{self.tag}"


# Order matters: `otlp-sink` builds on `python`.
STANDINS = [
    Standin("python", "3.11-bookworm", "python:3.11.11-slim-bookworm"),
    Standin("nginx", "bookworm", "nginx:1.27.4-alpine"),
    Standin("postgres", "15-bookworm", "postgres:15.12-bookworm"),
    Standin("prometheus", "bookworm", "prom/prometheus:v3.2.1"),
    Standin("busybox", "bookworm", "busybox:1.37.0"),
    Standin("node", "20-host", "node:20.19.5-bookworm-slim"),
    Standin("otlp-sink", "1", "grafana/tempo:2.7.2"),
]


def image(name: str) -> str:
    """The stand-in tag for a short name (`python`, `debian`, …)."""
    if name == "debian":
        return DEBIAN
    return next(s.image for s in STANDINS if s.name == name)


def prune_dangling() -> None:
    """Remove the untagged images a rebuild of ours left behind — ours only (by label), never others'."""
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL}=flowerbed"], capture_output=True, timeout=300)


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True, timeout=60).returncode == 0


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses for bookworm (deb822 `.sources` or one-line lists)."""
    candidates: list[tuple[str, list[str]]] = []
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split():
                for uri in fields.get("URIs", "").split():
                    candidates.append((uri, fields.get("Suites", "").split()))
    for path in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m:
                    candidates.append((m.group(1), [m.group(2)]))
    for uri, suites in candidates:
        if SUITE in suites and "security" not in uri:
            return uri
    raise RuntimeError(f"no apt source for Debian {SUITE} under {sources}: debootstrap needs a mirror")


def build_debian_root(log: callable = print) -> None:
    """`flowerbed-standin/debian:bookworm` from debootstrap, once (the rootfs is not cached by Docker)."""
    if image_exists(DEBIAN):
        return
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: `apt-get install debootstrap` (make setup installs it as root)")
    mirror = apt_mirror()
    log(f"debootstrap {SUITE} from {mirror} …")
    with tempfile.TemporaryDirectory(prefix="flowerbed-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], timeout=1200)
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {SUITE} main\n")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                'CMD ["bash"]',
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                f"LABEL {LABEL}=flowerbed",
                "-",
                DEBIAN,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tar.wait()
        if imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr}")


def _context(standin: Standin, into: Path) -> Path:
    """The stand-in's build context: its recipe plus the host files it copies in."""
    context = into / standin.name
    shutil.copytree(RECIPES / standin.name, context)
    shutil.copy(HOST_CA_BUNDLE, context / "ca-certificates.crt")
    if standin.name == "node":
        node = Path(shutil.which("node") or "/usr/bin/node").resolve()
        npm = Path(os.path.realpath(shutil.which("npm") or "/usr/bin/npm")).parents[1]  # …/node_modules/npm
        shutil.copy(node, context / "node")
        shutil.copytree(npm, context / "npm", symlinks=True)
    return context


def build_standins(log: callable = print) -> dict[str, str]:
    """Build every stand-in (cached layers make this seconds when nothing changed); real name → stand-in."""
    build_debian_root(log)
    with tempfile.TemporaryDirectory(prefix="flowerbed-standins-") as tmp:
        for standin in STANDINS:
            if not (RECIPES / standin.name / "Dockerfile").is_file():
                raise RuntimeError(f"no recipe for stand-in {standin.name} in {RECIPES}")
            log(f"stand-in {standin.image} (for {standin.replaces})")
            context = _context(standin, Path(tmp))
            run(
                [
                    "docker",
                    "build",
                    "-q",
                    "-t",
                    standin.image,
                    "--build-arg",
                    f"DEBIAN_IMAGE={DEBIAN}",
                    "--build-arg",
                    f"PYTHON_IMAGE={image('python')}",
                    "--label",
                    f"{LABEL}=flowerbed",
                    str(context),
                ],
                timeout=1800,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
    return {s.replaces: s.image for s in STANDINS} | {"debian:12.10-slim": DEBIAN}
