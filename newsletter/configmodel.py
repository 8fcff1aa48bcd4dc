"""The pydantic models of the settings classes, built from their declarations.

``configfields.Values`` takes values that are surely right as they are; the others come
here: pydantic converts them (``"false"`` from an environment variable to False, ``"5"``
to 5) exactly as when the settings were pydantic models, or raises its
``ValidationError``, whose first error ``config.load_settings`` reports in one line.
Loaded only then: importing pydantic and building the models costs about 70 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from .configfields import MISSING, Spec, Values

_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "path": Path,
                          "strs": list[str], "rates": dict[str, float],
                          "levels": dict[str, str]}


def validate(cls: type[Values], values: dict[str, Any]) -> dict[str, Any]:
    """Every field's value as the pydantic model makes it; raises its ValidationError."""
    given = {name: value.model_dump(include=value.model_fields_set)
             if isinstance(value, Values) else value for name, value in values.items()}
    return _plain(cls, model(cls)(**given))


def _plain(cls: type[Values], made: BaseModel) -> dict[str, Any]:
    out = {}
    for name, spec in cls.model_fields.items():
        value = getattr(made, name)
        if isinstance(spec.kind, type) and isinstance(value, BaseModel):
            value = spec.kind.raw(_plain(spec.kind, value), value.model_fields_set)
        out[name] = value
    return out


@cache
def model(cls: type[Values]) -> type[BaseModel]:
    """The pydantic model of ``cls``: same fields, defaults, limits and checks."""
    fields = {name: (_annotation(spec), _field(spec)) for name, spec in cls.model_fields.items()}
    validators = {f"_check_{name}": field_validator(name)(classmethod(_calling(check)))
                  for name, check in cls.checks.items()}
    return create_model(  # type: ignore[no-any-return, call-overload]
        cls.__name__, __config__=ConfigDict(extra="forbid", validate_default=True),
        __validators__=validators, **fields)


def _calling(check: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda _cls, value: check(value)


def _annotation(spec: Spec) -> Any:
    kind = spec.kind
    if isinstance(kind, tuple):
        base: Any = Literal[kind]
    elif isinstance(kind, type):
        base = model(kind)
    else:
        base = _TYPES[kind]
    return base | None if spec.optional else base


def _field(spec: Spec) -> Any:
    if spec.factory is not None:
        factory = model(spec.kind) if isinstance(spec.kind, type) else spec.factory
        return Field(default_factory=factory, **spec.limits)
    if spec.default is MISSING:
        return Field(**spec.limits)
    return Field(default=spec.default, **spec.limits)
