"""Test-only: records what crosses the wire in a SecAgg+ test federation. Never installed.

A test federation gets this directory on its processes' PYTHONPATH (`capture.capture_env`);
Python imports this module at start-up in each of them. It only installs an import hook:
when a process imports Flowerbed's ServerApp SecAgg+ module or its ClientApp module,
`capture.install_server` / `capture.install_client` wrap them. Production code has no
switch that turns capturing on.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGETS = {"flowerbed_app.secagg_server": "install_server", "flowerbed_app.client_app": "install_client"}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, install: str) -> None:
        self.inner = inner
        self.install = install

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        import capture  # this directory is on sys.path: that is how this module got imported

        getattr(capture, self.install)(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, TARGETS[name])
        return spec


sys.meta_path.insert(0, _Finder())
