"""Checking option values against their declarations (see `selfsup.options.opt`): the type of the dataclass
annotation (int, float, bool, str, X | None, tuple[float, float], list[int], int | str) and the values allowed.

A bad value is a `ConfigError` whose one-line message names the option as the user wrote it, the value
given and what is allowed, e.g. `--optim.lr: got 'abc', expected a number > 0`. Good values come back in
their declared types: ints become floats where a float is declared, numbers written as text ('1e-3', which
YAML reads as a string) become numbers, lists become tuples where a tuple is declared.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from selfsup.errors import SelfsupError
from selfsup.options import Allowed, allowed

Namer = Callable[[str], str]  # 'optim.lr' (or 'lr' for one options class) -> the name the user wrote


class ConfigError(SelfsupError, ValueError):
    """A bad option or config file; the message names it and the fix."""


class _Invalid(Exception):
    """A value that does not fit its declaration (turned into a ConfigError naming the option)."""


def check_sections(raw: Mapping[str, Any], classes: Mapping[str, type], name: Namer) -> dict[str, Any]:
    """`raw` ({'optim': {'lr': ..}, ..}) with the values of each section in `classes` checked and converted
    (see `check_options`); other sections and unknown options pass unchanged for the caller to report."""
    out = dict(raw)
    for section, cls in classes.items():
        values = raw.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{name(section)}: got {show(values)}, expected a mapping of options "
                              f"({section}: {{option: value}})")
        out[section] = check_options(cls, values, lambda key, s=section: name(f"{s}.{key}"))
    return out


def check_options(cls: type, values: Mapping[str, Any], name: Namer) -> dict[str, Any]:
    """The values given for options of the dataclass `cls`, checked and converted to their declared types;
    names that are not options of `cls` pass unchanged. Raises ConfigError on the first bad value, naming
    the option with `name(option)`."""
    fields = _declarations(cls)
    out = dict(values)
    for key, value in values.items():
        if key in fields:
            hint, allow = fields[key]
            try:
                out[key] = convert(value, hint, allow)
            except _Invalid:
                raise ConfigError(f"{name(key)}: got {show(value)}, expected {expected(hint, allow)}") from None
    return out


@functools.cache
def _declarations(cls: type) -> dict[str, tuple[Any, Allowed]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], allowed(f)) for f in dataclasses.fields(cls)}


def declarations(cls: type) -> dict[str, tuple[Any, Allowed]]:
    """{option: (type, values allowed)} of an options dataclass."""
    return dict(_declarations(cls))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def convert(value: Any, hint: Any, allow: Allowed) -> Any:
    """`value` in the declared type `hint` if it fits `hint` and `allow`; raises _Invalid otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        if value is None and type(None) in args:
            return None
        for arg in args:
            try:
                return convert(value, arg, allow)
            except _Invalid:
                pass
        raise _Invalid
    if origin is tuple:
        return _sequence(value, args, allow)
    if origin is list:
        return list(_sequence(value, (args[0], ...), allow))
    return _scalar(value, hint, allow)


def _sequence(value: Any, args: tuple, allow: Allowed) -> tuple:
    """tuple[X, Y] (exactly that many) or tuple[X, ...] (at least one), each item checked; ordered if asked."""
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid
    hints = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(value) != len(hints):
        raise _Invalid
    items = tuple(convert(v, h, allow) for v, h in zip(value, hints, strict=True))
    if allow.ordered and any(a > b for a, b in zip(items, items[1:], strict=False)):
        raise _Invalid
    return items


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _scalar(value: Any, hint: Any, allow: Allowed) -> Any:
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool) and allow.admits(value):
        return value
    if hint is float:
        x = _number(value)
        if x is not None and math.isfinite(x) and allow.admits(x):
            return x
    if hint is str:
        text = str(value) if _number(value) is not None and not isinstance(value, str) else value
        if isinstance(text, str) and (not allow.choices or text in allow.choices):
            return text
    if hint is type(None) and value is None:
        return None
    if hint in (bool, int, float, str, type(None)):
        raise _Invalid
    return value  # a type this module does not know is not checked


_NOUNS = {bool: ("true or false", "true or false values"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings"), type(None): ("null", "nulls")}


def expected(hint: Any, allow: Allowed) -> str:
    """What `hint` and `allow` accept, in words: 'a number > 0', 'two numbers [a, b] with 0 < a <= b <= 1'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        return " or ".join(expected(a, allow) for a in args)
    if origin in (tuple, list):
        fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
        what = f"two {_NOUNS.get(args[0], ('', 'values'))[1]}" if fixed and len(args) == 2 else \
            f"a non-empty list of {_NOUNS.get(args[0], ('', 'values'))[1]}"
        if allow.ordered:
            return f"{what} [a, b] with {allow.pair_bounds()}"
        return f"{what}, each {_scalar_words(args[0], allow, article=False)}" if allow != Allowed() else what
    return _scalar_words(hint, allow)


def _scalar_words(hint: Any, allow: Allowed, article: bool = True) -> str:
    if hint is str and allow.choices:
        choices = [f"'{c}'" for c in allow.choices]
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    noun = _NOUNS.get(hint, (getattr(hint, "__name__", str(hint)),))[0]
    bounds = allow.bounds() if hint in (int, float) else ""
    if not article:
        return bounds or noun
    return f"{noun} {bounds}" if bounds else noun


def show(value: Any) -> str:
    """A value as the user would write it: 'abc' (quoted text), -5, [0.9, 0.1], null, true."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


__all__ = ["ConfigError", "check_options", "check_sections", "convert", "declarations", "expected", "show"]
