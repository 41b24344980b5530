"""Every declared option is checked against its type and declared range (selfsup.validate)."""

import math
import types
import typing
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.config import option_classes
from selfsup.engine.optim import OPTIMIZERS
from selfsup.eval.protocols import PROTOCOLS
from selfsup.options import Allowed, describe, opt
from selfsup.validate import ConfigError, check_options, check_sections, declarations

CLASSES = {**option_classes(), **{f"eval {name}": p.options for name, p in PROTOCOLS.items()}}
OPTIONS = [(section, cls, name) for section, cls in CLASSES.items() for name in declarations(cls)]
DEFAULTS = {(section, name): default for section, cls in CLASSES.items() for name, default, _, _ in describe(cls)}


def check(cls, name, value):
    return check_options(cls, {name: value}, lambda key: f"--{key}")[name]


def members(hint) -> tuple:
    """The types a hint allows: (int, str) for int | str, (float, NoneType) for float | None."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def number(kind, allow: Allowed, inside: bool = True):
    """Numbers of type kind (int or float) inside the declared bounds, or outside them (one strategy per
    violated bound; none when there are no bounds)."""
    lo = allow.above if allow.above is not None else allow.low
    hi = allow.below if allow.below is not None else allow.high
    if kind is int:
        lo_i = None if lo is None else math.floor(lo) + 1 if allow.above is not None else math.ceil(lo)
        hi_i = None if hi is None else math.ceil(hi) - 1 if allow.below is not None else math.floor(hi)
        if inside:
            return st.integers(lo_i, hi_i if hi_i is not None else (lo_i or 0) + 10**6)
        return ([st.integers(max_value=lo_i - 1)] if lo_i is not None else []) + (
            [st.integers(min_value=hi_i + 1)] if hi_i is not None else [])
    finite = {"allow_nan": False, "allow_infinity": False}
    if inside:
        return st.floats(lo, hi if hi is not None else 1e6, exclude_min=allow.above is not None,
                         exclude_max=allow.below is not None, **finite)
    return ([st.floats(max_value=lo, exclude_max=allow.above is None, **finite)] if lo is not None else []) + (
        [st.floats(min_value=hi, exclude_min=allow.below is None, **finite)] if hi is not None else [])


def scalar_inside(kind, allow: Allowed):
    if kind is bool:
        return st.booleans()
    if kind in (int, float):
        return number(kind, allow)
    if kind is str:
        return st.sampled_from(allow.choices) if allow.choices else st.text(min_size=1)
    return st.none()


def inside(hint, allow: Allowed):
    """Values the declaration allows."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        pair = st.tuples(*(scalar_inside(a, allow) for a in args))
        return pair.map(lambda p: tuple(sorted(p))) if allow.ordered else pair
    if origin is list:
        return st.lists(scalar_inside(args[0], allow), min_size=1, max_size=4)
    if len(members(hint)) > 1:
        return st.one_of(*(inside(m, allow) for m in members(hint)))
    return scalar_inside(hint, allow)


def outside(hint, allow: Allowed):
    """Values the declaration rejects: of another type, out of the bounds, not among the choices, a pair out
    of order, an empty list."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    kinds = members(hint)
    wrong = [st.just({"a": 1})] + [st.just(None)] * (type(None) not in kinds)
    if origin in (tuple, list):
        scalar = args[0]
        good = scalar_inside(scalar, allow)
        bad = [st.just([])] + [st.builds(lambda b, g: [b, g], s, good) for s in _bad_scalars(scalar, allow)]
        if origin is tuple:
            bad += [good.map(lambda g: [g]), st.tuples(good, good, good).map(list)]
            if allow.ordered:
                bad.append(st.tuples(good, good).filter(lambda p: p[0] != p[1]).map(lambda p: sorted(p)[::-1]))
        return st.one_of(*wrong, *bad)
    bad = []
    for kind in kinds:
        bad += _bad_scalars(kind, allow) if kind is not type(None) else []
    if int in kinds and str in kinds:  # int | str: a number out of bounds is also not one of the strings
        bad = [st.just(-1) if allow.low == 1 else st.nothing()] + [st.text().filter(lambda t: t not in
                                                                                    (allow.choices or ()))]
    return st.one_of(*wrong, *bad)


def _bad_scalars(kind, allow: Allowed) -> list:
    if kind is bool:
        return [st.sampled_from(["abc", 1, 0.5])]
    if kind is int:
        return [*number(int, allow, inside=False), st.sampled_from(["abc", True, 2.5, float("nan")])]
    if kind is float:
        return [*number(float, allow, inside=False), st.sampled_from(["abc", True, float("nan"), float("inf")])]
    if kind is str:
        wrong_type = st.sampled_from([True, ["a"]])
        return [wrong_type, st.text().filter(lambda t: t not in allow.choices)] if allow.choices else [wrong_type]
    return []


IDS = [f"{section}.{name}" for section, _, name in OPTIONS]


@pytest.mark.parametrize(("section", "cls", "name"), OPTIONS, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_option_rejects_values_outside_its_declaration(section, cls, name, data):
    hint, allow = declarations(cls)[name]
    value = data.draw(outside(hint, allow))
    with pytest.raises(ConfigError, match=f"^--{name}: got .*, expected "):
        check(cls, name, value)


@pytest.mark.parametrize(("section", "cls", "name"), OPTIONS, ids=IDS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_option_accepts_values_inside_its_declaration(section, cls, name, data):
    hint, allow = declarations(cls)[name]
    value = data.draw(inside(hint, allow))
    assert check(cls, name, value) == (list(value) if typing.get_origin(hint) is list else value)


@pytest.mark.parametrize(("section", "cls", "name"), OPTIONS, ids=IDS)
def test_every_option_accepts_its_default(section, cls, name):
    default = DEFAULTS[section, name]
    assert check(cls, name, default) == default


def test_every_number_option_declares_its_range():
    def numeric(hint) -> bool:
        return any(m in (int, float) or numeric_args(m) for m in members(hint))

    def numeric_args(hint) -> bool:
        return any(a in (int, float) for a in typing.get_args(hint))

    unbounded = [f"{section}.{name}" for section, cls, name in OPTIONS
                 if numeric(declarations(cls)[name][0]) and not declarations(cls)[name][1].bounds()]
    assert not unbounded, "declare low=/high=/above=/below= in opt() for these options"


def test_the_optimizer_choices_are_the_engines():
    assert set(declarations(option_classes()["optim"])["optimizer"][1].choices) == set(OPTIMIZERS)


@dataclass
class Example:
    lr: float = opt(0.1, "a rate", above=0)
    p: float = opt(0.5, "a probability", low=0, high=1)
    steps: int = opt(3, "a count", low=1)
    scale: tuple[float, float] = opt((0.4, 1.0), "a range", above=0, high=1, ordered=True)
    k: list[int] = opt([20], "counts", low=1)
    minutes: float | None = opt(None, "optional", above=0)
    devices: int | str = opt(1, "count or auto", low=1, choices=("auto",))
    mode: str = opt("a", "a mode", choices=("a", "b"))
    flag: bool = opt(True, "a switch")
    plain: int = opt(0, "declared the old way")


@pytest.mark.parametrize(("name", "value", "converted"), [
    ("lr", 1, 1.0), ("lr", "1e-3", 0.001), ("p", 0, 0.0), ("p", 1, 1.0), ("steps", 1, 1), ("scale", [0.3, 0.3],
     (0.3, 0.3)), ("k", (5, 10), [5, 10]), ("minutes", None, None), ("minutes", 2, 2.0), ("devices", "auto", "auto"),
    ("devices", 4, 4), ("mode", "b", "b"), ("flag", False, False), ("plain", -7, -7)])
def test_good_values_come_back_in_the_declared_type(name, value, converted):
    got = check(Example, name, value)
    assert got == converted and type(got) is type(converted)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("lr", "abc", "--lr: got 'abc', expected a number > 0"),
    ("lr", 0, "--lr: got 0, expected a number > 0"),
    ("p", 1.5, "--p: got 1.5, expected a number in [0, 1]"),
    ("steps", 2.0, "--steps: got 2.0, expected an integer >= 1"),
    ("steps", True, "--steps: got true, expected an integer >= 1"),
    ("scale", [0.9, 0.1], "--scale: got [0.9, 0.1], expected two numbers [a, b] with 0 < a <= b <= 1"),
    ("scale", [0.5], "--scale: got [0.5], expected two numbers [a, b] with 0 < a <= b <= 1"),
    ("k", [], "--k: got [], expected a non-empty list of integers, each >= 1"),
    ("k", [5, 0], "--k: got [5, 0], expected a non-empty list of integers, each >= 1"),
    ("minutes", -1, "--minutes: got -1, expected a number > 0 or null"),
    ("devices", 0, "--devices: got 0, expected an integer >= 1 or 'auto'"),
    ("devices", "all", "--devices: got 'all', expected an integer >= 1 or 'auto'"),
    ("mode", "c", "--mode: got 'c', expected one of 'a', 'b'"),
    ("flag", "yes please", "--flag: got 'yes please', expected true or false"),
    ("plain", None, "--plain: got null, expected an integer"),
])
def test_bad_values_are_named_with_what_is_allowed(name, value, message):
    with pytest.raises(ConfigError) as e:
        check(Example, name, value)
    assert str(e.value) == message


def test_sections_are_checked_and_other_keys_left_to_the_caller():
    raw = {"method": "x", "ex": {"lr": 1, "unknown": "kept"}, "other": {"lr": "not checked"}}
    out = check_sections(raw, {"ex": Example}, lambda path: f"r.yaml: {path}")
    assert out == {"method": "x", "ex": {"lr": 1.0, "unknown": "kept"}, "other": {"lr": "not checked"}}
    with pytest.raises(ConfigError, match=r"^r.yaml: ex.steps: got 0, expected an integer >= 1$"):
        check_sections({"ex": {"steps": 0}}, {"ex": Example}, lambda path: f"r.yaml: {path}")
    with pytest.raises(ConfigError, match=r"^r.yaml: ex: got 5, expected a mapping of options"):
        check_sections({"ex": 5}, {"ex": Example}, lambda path: f"r.yaml: {path}")
