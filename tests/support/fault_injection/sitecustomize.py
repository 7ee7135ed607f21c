"""Test-only: makes chosen nodes' ClientApps misbehave. Never installed, never on a deployment's path.

A test federation gets this directory on its processes' PYTHONPATH (see
`client_faults.fault_env`); Python then imports this module at start-up in every
process of that federation. It only installs an import hook: when a process imports
Flowerbed's ClientApp module, `client_faults.install` wraps it. Production code has no
switch that could turn a fault on by accident.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "flowerbed_app.client_app"


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        import client_faults  # this directory is on sys.path: that is how this module got imported

        client_faults.install(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
