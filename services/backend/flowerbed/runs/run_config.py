"""`TrainingConfig`: the API's model of a run's configuration, derived from the app's declarations.

Every field comes from `flowerbed_app.run_settings.SETTINGS` (type, default, bounds, choices,
description, and the form's `x-label`, `x-group`, `x-advanced`, `x-when`), so the API, the
`/training/schema` the dashboard builds its form from, and the ServerApp accept the same
values. Shapes and bounds are checked by pydantic here; the cross-field rules are the app's
named rules (`RunSettings.validate`, which the ServerApp runs too), mapped back to API names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from flowerbed_app.run_settings import BY_KEY, GROUPS, SETTINGS, RunSettings, SettingsError
from flowerbed_app.setting_spec import Declared

API_SETTINGS: tuple[Declared, ...] = tuple(item for item in SETTINGS if item.spec.api)


class FieldError(ValueError):
    """A value the schema allowed but the domain rejects; `field` is the API name."""

    def __init__(self, field: str, reason: str, value: Any = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.value = value


def _field(item: Declared) -> tuple[Any, Any]:
    """One pydantic field (annotation, FieldInfo) for a declared setting."""
    s = item.spec
    annotation: Any = Literal[s.choices] if s.choices else item.kind  # type: ignore[valid-type]
    default = item.default
    if s.nullable:
        annotation = annotation | None
        default = None if item.default == "" else item.default
    extra: dict[str, Any] = {"x-label": s.label, "x-group": s.group, "x-advanced": s.advanced}
    if s.when:
        extra["x-when"] = {name: list(values) for name, values in s.when.items()}
    if s.pattern:
        extra["pattern"] = s.pattern  # published for forms; RunSettings' check says what is valid
    return annotation, Field(
        default,
        title=s.label,
        description=s.description,
        ge=s.ge,
        gt=s.gt,
        le=s.le,
        lt=s.lt,
        min_length=s.min_length,
        max_length=s.max_length,
        strict=True if item.kind is int else None,
        json_schema_extra=extra,
    )


class _TrainingConfigBase(BaseModel):
    """A training run's configuration. Unknown fields are rejected (typos fail loudly)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    def run_settings(self, **extra: Any) -> RunSettings:
        values = {k: ("" if v is None else v) for k, v in self.model_dump().items()}
        return RunSettings(**{**values, **extra})

    def validate_domain(self) -> RunSettings:
        """The run's RunSettings, after the app's own rules; a broken rule is a FieldError naming our field."""
        settings = self.run_settings()
        try:
            settings.validate()
        except SettingsError as exc:
            field = BY_KEY[exc.key].name if exc.key in BY_KEY else exc.key.replace("-", "_")
            raise FieldError(field, exc.reason, getattr(self, field, None)) from None
        return settings


TrainingConfig: type[_TrainingConfigBase] = create_model(  # type: ignore[call-overload]
    "TrainingConfig",
    __base__=_TrainingConfigBase,
    __doc__=_TrainingConfigBase.__doc__,
    **{item.name: _field(item) for item in API_SETTINGS},
)


def training_schema() -> dict[str, Any]:
    """TrainingConfig's JSON schema with the form sections (`x-groups`: title and hint, in order)."""
    schema = TrainingConfig.model_json_schema()
    used = {item.spec.group for item in API_SETTINGS}
    schema["x-groups"] = [{"title": title, "hint": hint} for title, hint in GROUPS.items() if title in used]
    return schema


class Preset(BaseModel):
    """A named partial configuration the Start form fills in over the defaults (`GET /training/presets`)."""

    name: str
    description: str
    config: dict[str, Any]


# Each is validated against TrainingConfig and its rules by a test (test_run_settings_surfaces.py).
PRESETS: tuple[Preset, ...] = (
    Preset(
        name="Quick check — 1 min",
        description="Two short rounds on 300 examples per node, 1,000 test examples: does the federation train at all?",
        config={
            "num_rounds": 2,
            "max_train_examples": 300,
            "max_test_examples": 1000,
            "fraction_train": 1.0,
            "data_source": "partitions",
            "partitioner": "iid",
        },
    ),
    Preset(
        name="IID benchmark",
        description="Ten rounds of FedAvg on IID partitions, every node each round: the reference curve.",
        config={
            "num_rounds": 10,
            "strategy": "fedavg",
            "fraction_train": 1.0,
            "data_source": "partitions",
            "partitioner": "iid",
            "seed": 42,
        },
    ),
    Preset(
        name="Non-IID Dirichlet 0.5",
        description="Ten rounds on label-skewed partitions (Dirichlet α = 0.5): how the strategy copes with non-IID data.",
        config={
            "num_rounds": 10,
            "fraction_train": 1.0,
            "data_source": "partitions",
            "partitioner": "dirichlet",
            "alpha": 0.5,
            "seed": 42,
        },
    ),
)
