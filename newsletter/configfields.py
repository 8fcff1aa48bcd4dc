"""Plain settings objects, declared like pydantic models, that load without pydantic.

``config.Settings`` and ``config.Brand`` are classes of typed fields with defaults and
limits (``field(default, ge=..., pattern=...)``) and per-field checks (``@validator``).
A value of the declared type within its limits is taken as it is (with the check's
result): the common case, a TOML file of right values. Anything else (a number written as
text in an environment variable, an unknown key, a value out of range) goes through the
pydantic model built from the same declaration (``configmodel``): it converts the value
as pydantic always did, or raises pydantic's ``ValidationError`` for
``config.load_settings`` to turn into one line. So there is one list of fields, limits and
checks, and pydantic (about 70 ms to import and build) is loaded only when needed.

The objects offer what the code uses of a pydantic model: attribute access (and
assignment, unchecked, as pydantic allowed), ``model_fields``, ``model_fields_set``,
``model_copy(update=...)`` (unchecked, as pydantic's), ``model_dump(include=...)`` and
equality.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "Path": "path",
          "list[str]": "strs", "dict[str, float]": "rates", "dict[str, str]": "levels"}
MISSING: Any = object()


class Spec:
    """One field: its kind (a name from ``_KINDS``'s values, a tuple of allowed strings,
    or a ``Values`` class), whether None is allowed, its default and its limits."""

    __slots__ = ("kind", "optional", "default", "factory", "limits")

    def __init__(self, default: Any = MISSING, *,
                 default_factory: Callable[[], Any] | None = None, **limits: Any) -> None:
        self.kind: Any = None
        self.optional = False
        self.default = default
        self.factory = default_factory
        self.limits = limits  # ge, gt, le, min_length, max_length, pattern: as pydantic's

    def make_default(self) -> Any:
        return self.factory() if self.factory is not None else self.default

    def take(self, value: Any) -> tuple[bool, Any]:
        """(True, the value as pydantic would make it) when it surely is right as given."""
        if value is None:
            return self.optional, None
        kind = self.kind
        if kind == "str":
            return type(value) is str and self._fits_text(value), value
        if kind in ("int", "float"):
            if kind == "float" and type(value) is int:
                value = float(value)
            return type(value) is _NUMBERS[kind] and self._fits_number(value), value
        if kind == "bool":
            return type(value) is bool, value
        if kind == "path":
            ok = (type(value) is str and value != "") or isinstance(value, Path)
            return ok, Path(value) if ok else value
        if isinstance(kind, tuple):
            return type(value) is str and value in kind, value
        if isinstance(kind, type):
            return kind.take_nested(value)
        return _take_container(kind, value)

    def _fits_text(self, value: str) -> bool:
        limits = self.limits
        return (len(value) >= limits.get("min_length", 0)
                and len(value) <= limits.get("max_length", len(value))
                and ("pattern" not in limits
                     or ("\n" not in value and re.search(limits["pattern"], value) is not None)))

    def _fits_number(self, value: float) -> bool:
        limits = self.limits
        return (value == value  # not NaN
                and ("ge" not in limits or value >= limits["ge"])
                and ("gt" not in limits or value > limits["gt"])
                and ("le" not in limits or value <= limits["le"]))


_NUMBERS = {"int": int, "float": float}


def _take_container(kind: str, value: Any) -> tuple[bool, Any]:
    if kind == "strs":
        ok = type(value) is list and all(type(v) is str for v in value)
        return ok, list(value) if ok else value
    if type(value) is not dict or not all(type(k) is str for k in value):
        return False, value
    if kind == "levels":
        return all(type(v) is str for v in value.values()), dict(value)
    ok = all(type(v) in (int, float) for v in value.values())  # rates
    return ok, {k: float(v) for k, v in value.items()} if ok else value


def field(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None,
          **limits: Any) -> Any:
    """A field's default and limits (ge, gt, le, min_length, max_length, pattern); a field
    without a default is required."""
    return Spec(default, default_factory=default_factory, **limits)


def validator(*names: str) -> Callable[[Callable[[Any], Any]], Any]:
    """Mark a function of the value as the check of the named fields: it returns the value
    to keep or raises ValueError with the message the user sees."""
    def mark(check: Callable[[Any], Any]) -> Any:
        check.__fields__ = names  # type: ignore[attr-defined]
        return staticmethod(check)
    return mark


class Values:
    """Base of a settings class: its annotated class attributes are the fields."""

    model_fields: ClassVar[dict[str, Spec]] = {}
    checks: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        scope = vars(sys.modules[cls.__module__])
        fields: dict[str, Spec] = {}
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if annotation.startswith("ClassVar"):
                continue
            value = cls.__dict__.get(name, MISSING)
            spec = value if isinstance(value, Spec) else Spec(value)
            text, _, none = annotation.partition(" | ")
            spec.optional = none == "None"
            spec.kind = _kind(text, scope)
            fields[name] = spec
            if value is not MISSING:
                delattr(cls, name)
        cls.model_fields = fields
        cls.checks = {name: check.__func__ for check in cls.__dict__.values()
                      if isinstance(check, staticmethod) and hasattr(check.__func__, "__fields__")
                      for name in check.__func__.__fields__}

    def __init__(self, **values: Any) -> None:
        checked = type(self).fast(values)
        if checked is None:  # not surely right as given: pydantic converts it or says why not
            from .configmodel import validate

            checked = validate(type(self), values)
        self.__dict__.update(checked)
        self.__dict__["_fields_set"] = set(values)

    @classmethod
    def fast(cls, values: dict[str, Any]) -> dict[str, Any] | None:
        """Every field's value, if every given one is surely right; else None."""
        if not values.keys() <= cls.model_fields.keys():
            return None
        out: dict[str, Any] = {}
        for name, spec in cls.model_fields.items():
            ok, value = spec.take(values[name] if name in values else spec.make_default())
            if not ok:
                return None
            check = cls.checks.get(name)
            if check is not None:
                try:
                    value = check(value)
                except ValueError:
                    return None
            out[name] = value
        return out

    @classmethod
    def take_nested(cls, value: Any) -> tuple[bool, Any]:
        if isinstance(value, cls):
            return True, value
        checked = cls.fast(value) if type(value) is dict else None
        if checked is None:
            return False, value
        return True, cls.raw(checked, set(value))

    @classmethod
    def raw(cls, values: dict[str, Any], fields_set: set[str]) -> Any:
        """An object of already checked values."""
        made = object.__new__(cls)
        made.__dict__.update(values)
        made.__dict__["_fields_set"] = set(fields_set)
        return made

    @property
    def model_fields_set(self) -> set[str]:
        return self.__dict__["_fields_set"]

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        values = {name: getattr(self, name) for name in self.model_fields} | (update or {})
        return self.raw(values, self.model_fields_set | set(update or ()))

    def model_dump(self, *, include: set[str] | None = None) -> dict[str, Any]:
        out = {}
        for name in self.model_fields:
            if include is None or name in include:
                value = getattr(self, name)
                out[name] = (value.model_dump() if isinstance(value, Values)
                             else type(value)(value) if type(value) in (list, dict) else value)
        return out

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.model_fields)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the pydantic models were

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.model_fields)
        return f"{type(self).__name__}({shown})"


def _kind(annotation: str, scope: dict[str, Any]) -> Any:
    if annotation in _KINDS:
        return _KINDS[annotation]
    if annotation.startswith("Literal["):
        return tuple(re.findall(r"[\"']([^\"']*)[\"']", annotation))
    named = scope[annotation]  # a Literal alias or a Values class of the same module
    return named if isinstance(named, type) else named.__args__
