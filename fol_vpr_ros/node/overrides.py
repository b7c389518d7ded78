"""KEY=VALUE overrides of node parameters, typed as the NodeParams fields: the one override parser.

The value is YAML (``top_k=50``, ``input_size=[224, 224]``, ``publish_tf=false``), then made the
parameter's type: an integer for a float parameter is that float (``min_rerank_score=30`` is 30.0), a
string parameter keeps the text as written (``loop_closure.session_id=2024``, ``weights=random:0``);
ROS's own parameters (``use_sim_time``) pass as written. An unknown name (with the closest names) or a
value that cannot be the parameter's type is one ``OverrideError`` (a ConfigError, and an argparse type
error, so ``parse_override`` serves as an argparse ``type``) naming the override; ranges and choices are
checked where the parameters are loaded (``load_params``).
``ros_argument`` writes an override back as a ROS 2 ``-p NAME:=VALUE`` argument.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Iterable
from typing import Any

import yaml

from ..errors import ConfigError
from .params import RESERVED_PARAMETERS, param_specs

__all__ = ["OverrideError", "parse_override", "parse_overrides", "ros_argument"]


class OverrideError(ConfigError, argparse.ArgumentTypeError):
    """A bad NAME=VALUE override; as an argparse ``type`` error its message is shown as it is."""


def _types() -> dict[str, type]:
    return {spec.name: spec.type for spec in param_specs()}


def _unknown(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else " (no such node parameter)"


def _typed(name: str, kind: type, value: Any, text: str) -> Any:
    """``value`` (YAML) as the parameter's type, or an OverrideError naming the override."""
    wrong = OverrideError(f"{name}={text}: {value!r} is not {_KIND_WORDS[kind]} (the type of parameter {name})")
    if kind is str:
        return text if value is None or not isinstance(value, str) else value
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(value, bool):
        raise wrong
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is list and isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                        for v in value):
        return value
    raise wrong


_KIND_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list of integers"}


def parse_override(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (dotted parameter name, value of the parameter's type); an OverrideError otherwise."""
    name, sep, raw = str(text).partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name:
        raise OverrideError(f"{text!r}: expected NAME=VALUE, e.g. top_k=50")
    kinds = _types()
    if name not in kinds and name not in RESERVED_PARAMETERS:
        raise OverrideError(f"{name}={raw}: unknown parameter {name!r}{_unknown(name, kinds)}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OverrideError(f"{name}={raw}: the value is not valid YAML ({first})") from None
    if name not in kinds:  # ROS's own (use_sim_time): passed on as written
        return name, value
    return name, _typed(name, kinds[name], value, raw)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Several ``NAME=VALUE`` overrides (a later one for the same name wins)."""
    return dict(parse_override(item) for item in items)


def ros_argument(name: str, value: Any) -> str:
    """The ``NAME:=VALUE`` text after ROS 2's ``-p`` for a typed override (strings quoted, floats with a point)."""
    if isinstance(value, float):
        return f"{name}:={value!r}"
    return f"{name}:={json.dumps(value)}"
