"""One node parameter: ``ParamSpec``, the dataclass field that declares it, and the checks of its values.

A parameter is a dataclass field made by ``param_field`` (default, description, choices, range, an
extra check); ``ParamGroup`` validates every field of a group when it is built. A default may be a
function: it is called when the spec is first needed (defaults kept in modules that load torch).
Values are checked as strictly as ROS does (30 is not 30.0, a bool is not an int), then their range.
"""

from __future__ import annotations

import array
import dataclasses
import difflib
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError

__all__ = [
    "TYPE_NAMES",
    "ParamGroup",
    "ParamSpec",
    "check_arch",
    "check_device",
    "check_frame",
    "check_input_size",
    "check_label",
    "check_optional_topic",
    "check_topic",
    "check_topics",
    "check_value",
    "group_of",
    "param_field",
    "spec_of",
    "type_name",
]

Check = Callable[[str, Any], None]


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: dotted name, type (str/int/float/bool/list), default, description, allowed values."""

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    read_only: bool = True
    items: type = int  # element type of a list parameter (int: integer array, str: string array)

    def allowed(self) -> str:
        """Human-readable allowed values, e.g. 'one of raw, compressed' or '>= 0.0'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.min is not None and self.max is not None:
            return f"{self.min} .. {self.max}"
        if self.min is not None:
            return f">= {self.min}"
        if self.max is not None:
            return f"<= {self.max}"
        return type_name(self)


TYPE_NAMES = {str: "a string", int: "an integer", float: "a float", bool: "a bool (true/false)",
              list: "a list of integers"}


def type_name(spec: ParamSpec) -> str:
    """What a value of the parameter is, e.g. 'a float' or 'a list of strings'."""
    return "a list of strings" if spec.type is list and spec.items is str else TYPE_NAMES[spec.type]


def param_field(default: Any, description: str, *, choices: tuple[str, ...] | None = None,
                lo: float | None = None, hi: float | None = None, check: Check | None = None,
                items: type = int) -> Any:
    """A parameter field: default (or a function giving it) plus metadata (description, choices, range, check;
    ``items``: the element type of a list parameter)."""
    meta = {"description": description, "choices": choices, "min": lo, "max": hi, "check": check, "items": items}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def group_of(f: dataclasses.Field) -> type | None:
    """The parameter-group class of a field holding a nested group, else None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and issubclass(factory, ParamGroup) else None


def spec_of(prefix: str, f: dataclasses.Field) -> ParamSpec:
    """The ParamSpec of a parameter field (``prefix``: its group's dotted prefix)."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    kind = list if isinstance(default, tuple) else type(default)
    m = f.metadata
    return ParamSpec(prefix + f.name, kind, list(default) if kind is list else default, m["description"],
                     m.get("choices"), m.get("min"), m.get("max"), items=m.get("items", int))


# ---------------------------------------------------------------------------- value checks
def check_arch(name: str, value: str) -> None:
    if value == "auto":
        return
    from ..model.config import ARCHITECTURES, arch_config

    try:
        arch_config(value)
    except ConfigError:
        raise ConfigError(f"parameter {name}: {value!r} is not a known architecture; "
                          f"allowed: auto, {', '.join(ARCHITECTURES)}") from None


def check_input_size(name: str, value: tuple[int, ...]) -> None:
    from ..model.config import FoLConfig, arch_config

    if len(value) != 2:
        raise ConfigError(f"parameter {name}: {list(value)} is not [height, width]")
    try:
        FoLConfig(backbone=arch_config("vits14"), input_size=value)
    except ConfigError as exc:
        raise ConfigError(f"parameter {name}: {list(value)} is not allowed: {exc}") from None


def check_device(name: str, value: str) -> None:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise ConfigError(f"parameter {name}: {value!r} is not a device; allowed: cpu, cuda, cuda:N")


def check_topic(name: str, value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_/~{}]+", value) or "//" in value:
        raise ConfigError(f"parameter {name}: {value!r} is not a valid ROS topic name "
                          "(letters, digits, '_', '/', '~')")


def check_optional_topic(name: str, value: str) -> None:
    if value:
        check_topic(name, value)


def check_topics(name: str, value: tuple[str, ...]) -> None:
    """Each a topic name, none twice."""
    for topic in value:
        check_topic(name, topic)
    twice = sorted({t for t in value if value.count(t) > 1})
    if twice:
        raise ConfigError(f"parameter {name}: {', '.join(twice)} given twice")


def check_label(name: str, value: str) -> None:
    """An id stored with keyframes and messages: no control characters."""
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ConfigError(f"parameter {name}: {value!r} holds control characters")


def check_frame(name: str, value: str) -> None:
    if not value or value.startswith("/") or any(c.isspace() for c in value):
        raise ConfigError(f"parameter {name}: {value!r} is not a valid frame id "
                          "(non-empty, no leading '/', no spaces)")


def _typed(spec: ParamSpec, value: Any, strict: bool) -> Any:
    """``value`` as the parameter's type (float for ints unless ``strict``, tuple for lists), or ConfigError."""
    name = spec.name
    bad_type = ConfigError(f"parameter {name}: {value!r} ({type(value).__name__}) has the wrong type; "
                           f"expected {type_name(spec)}")
    if spec.type is bool:
        if not isinstance(value, bool):
            raise bad_type
    elif spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_type
    elif spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_type
        if strict and isinstance(value, int):
            raise ConfigError(f"parameter {name}: {value!r} is an integer, but ROS 2 parameters are typed and "
                              f"this one is a float: write {float(value)!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"parameter {name}: {value!r} is not finite; allowed: {spec.allowed()}")
    elif spec.type is str:
        if not isinstance(value, str):
            hint = f" (quote it: '{value}')" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            raise ConfigError(f"parameter {name}: {value!r} is not a string{hint}")
    elif spec.type is list and spec.items is str:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad_type
        value = tuple(value)
    elif spec.type is list:  # rclpy hands integer arrays over as array.array('q')
        if not isinstance(value, (list, tuple, array.array, np.ndarray)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
            raise bad_type
        value = tuple(int(v) for v in value)
    return value


def check_value(spec: ParamSpec, value: Any, check: Check | None, strict: bool) -> Any:
    """Type- and range-checked value (tuple for lists); ConfigError naming parameter, value and allowed range."""
    value = _typed(spec, value, strict)
    name = spec.name
    if spec.choices is not None and value not in spec.choices:
        close = difflib.get_close_matches(str(value), spec.choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"parameter {name}: {value!r} is not allowed{hint}; allowed: {spec.allowed()}")
    if spec.type in (int, float) and ((spec.min is not None and value < spec.min)
                                      or (spec.max is not None and value > spec.max)):
        raise ConfigError(f"parameter {name}: {value!r} is out of range; allowed: {spec.allowed()}")
    if check is not None:
        check(name, value)
    return value


# ---------------------------------------------------------------------------- groups
class ParamGroup:
    """Validation shared by all parameter groups (``_prefix`` gives the dotted ROS names)."""

    _prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            group = group_of(f)
            if group is not None:
                if not isinstance(value, group):
                    raise ConfigError(f"{self._prefix}{f.name} must be a {group.__name__}, "
                                      f"got {type(value).__name__}")
                continue
            if "description" not in f.metadata:
                continue
            spec = spec_of(self._prefix, f)
            object.__setattr__(self, f.name, check_value(spec, value, f.metadata.get("check"), strict=False))
        self._check_together()

    def _check_together(self) -> None:
        """Checks across fields of one group."""
