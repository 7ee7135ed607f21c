"""How a run setting is declared, and the checks every declaration gets for free.

A setting is one field of `RunSettings` (run_settings.py) whose metadata is a `Spec`:
default, type (from the annotation), bounds, choices, description, label, form group,
whether it is advanced and when it matters. The API model, the `/training/schema` the
dashboard's form is built from, the CLI flags, the app's pyproject defaults and README's
table are all derived from these specs (or checked against them by a test), so a
setting is declared once. Cross-field rules are not here: they are the named checks in
run_rules.py.

Light on purpose (no torch, no NumPy, no pydantic): every ClientApp process imports it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Self


class SettingsError(ValueError):
    """A run-config value is invalid; the message names the key and the fix."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything a surface needs to know about one setting, besides its name and type."""

    label: str
    group: str
    description: str
    choices: tuple[str, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    # Extra check of the value alone (not of other settings): raises ValueError with the reason.
    check: Callable[[Any], object] | None = None
    advanced: bool = False
    # Matters only when each named setting has one of the listed values (the form hides it otherwise).
    when: Mapping[str, tuple[Any, ...]] | None = None
    # False: set by the backend or the deployment (run id, model store, dataset …), not by users.
    api: bool = True
    # The API accepts null for it (meaning the default: "" for strings).
    nullable: bool = False
    # Flower run-config key when it is not the name in kebab-case (Flower's own conventions).
    key: str | None = None


def setting(default: Any, label: str, group: str, description: str, **spec: Any) -> Any:
    """A RunSettings field declared with its `Spec` (typed as Any so the annotation wins)."""
    return dataclasses.field(default=default, metadata={"spec": Spec(label, group, description, **spec)})


@dataclasses.dataclass(frozen=True)
class Declared:
    """One declared setting: its name (API and Python), type, default and spec."""

    name: str
    kind: type
    default: Any
    spec: Spec

    @property
    def key(self) -> str:
        """The Flower run-config key (pyproject `[tool.flwr.app.config]`, StartRun overrides)."""
        return self.spec.key or self.name.replace("_", "-")

    @property
    def flag(self) -> str:
        """`flowerbed train`'s flag."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Type-independent value checks of the declaration: choices, bounds, length, pattern, own check."""
        s = self.spec
        if s.choices is not None and value not in s.choices:
            raise SettingsError(self.key, f"unknown value {value!r}; valid: {', '.join(s.choices)}")
        if self.kind in (int, float) and not _within(value, s):
            raise SettingsError(self.key, f"must be {bounds_text(s)}, got {value}")
        if self.kind is str and s.min_length is not None and len(value.strip()) < s.min_length:
            raise SettingsError(self.key, "must not be empty")
        if self.kind is str and s.max_length is not None and len(value) > s.max_length:
            raise SettingsError(self.key, f"must be at most {s.max_length} characters")
        if s.check is not None:
            try:
                s.check(value)
            except ValueError as exc:
                raise SettingsError(self.key, str(exc)) from None

    def coerce(self, raw: Any, key: str) -> Any:
        """Flower passes TOML scalars; accept the obvious conversions, reject the rest."""
        try:
            if self.kind is bool:
                if isinstance(raw, str):
                    if raw.lower() not in ("true", "false"):
                        raise ValueError
                    return raw.lower() == "true"
                return bool(raw)
            if self.kind is int:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                return int(raw)
            if self.kind is float:
                return float(raw)
            return str(raw)
        except (TypeError, ValueError):
            raise SettingsError(key, f"expected {self.kind.__name__}, got {raw!r}") from None


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The declared settings of a settings dataclass, in declaration order (= form order)."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    return tuple(Declared(f.name, kinds[str(hints[f.name])], f.default, f.metadata["spec"]) for f in dataclasses.fields(cls))


@functools.cache
def keys_of(cls: type) -> dict[str, Declared]:
    """Run-config key → setting; also each name in kebab-case where its key differs (`--set num-rounds=…`)."""
    items = declared(cls)
    return {**{item.name.replace("_", "-"): item for item in items}, **{item.key: item for item in items}}


class DeclaredSettings:
    """What a settings dataclass does from its declarations alone: read Flower's run config, check it, write it back."""

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> Self:
        """Build from Flower's run config; unknown keys are an error (typos)."""
        by_key = keys_of(cls)
        values: dict[str, Any] = {}
        for key, raw in run_config.items():
            item = by_key.get(key) or by_key.get(key.replace("_", "-"))
            if item is None:
                raise SettingsError(key, f"unknown setting; valid: {', '.join(sorted(by_key))}")
            values[item.name] = item.coerce(raw, key)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Each value against its declaration (subclasses add the rules that relate settings)."""
        for item in declared(type(self)):
            item.check(getattr(self, item.name))

    def to_run_config(self) -> dict[str, Any]:
        """The kebab-case dict Flower expects, e.g. for StartRun overrides."""
        return {item.key: getattr(self, item.name) for item in declared(type(self))}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def bounds_text(s: Spec) -> str:
    """ "at least 1", "> 0", "in (0, 1]" …"""
    low = s.ge if s.ge is not None else s.gt
    high = s.le if s.le is not None else s.lt
    if low is not None and high is not None:
        return f"in {'[' if s.ge is not None else '('}{_number(low)}, {_number(high)}{']' if s.le is not None else ')'}"
    if low is not None:
        return f"at least {_number(low)}" if s.ge is not None else f"> {_number(low)}"
    if high is not None:
        return f"at most {_number(high)}" if s.le is not None else f"< {_number(high)}"
    return "a number"


def _within(value: float, s: Spec) -> bool:
    if value != value:  # NaN
        return False
    return not (
        (s.ge is not None and value < s.ge)
        or (s.gt is not None and value <= s.gt)
        or (s.le is not None and value > s.le)
        or (s.lt is not None and value >= s.lt)
    )
