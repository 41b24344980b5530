"""Declaring options once: a dataclass field carries its default, help (with tuning advice), the paper's value
and the values it allows, so the command line, the YAML recipes, the docs and the checks of
`selfsup.validate` are all generated from the same place.

    lr: float = opt(0.0005, "Base learning rate.", paper=0.0005, above=0)
    flip: float = opt(0.5, "Flip probability.", low=0, high=1)
    scale: tuple[float, float] = opt((0.4, 1.0), "Crop area range.", above=0, high=1, ordered=True)
    optimizer: str = opt("adamw", "adamw, lars or sgd.", choices=("adamw", "lars", "sgd"))

The type comes from the annotation; `low`/`high` are inclusive bounds and `above`/`below` exclusive ones
on numbers (on each element of a pair or list), `choices` lists the strings allowed, and `ordered` asks a
pair (a, b) for a <= b.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Allowed:
    """The values an option allows besides its type."""

    low: float | None = None  # x >= low
    high: float | None = None  # x <= high
    above: float | None = None  # x > above
    below: float | None = None  # x < below
    choices: tuple[str, ...] | None = None  # strings
    ordered: bool = False  # pairs (a, b): a <= b

    def admits(self, x: float) -> bool:
        """Whether the number x is within the bounds."""
        return ((self.low is None or x >= self.low) and (self.high is None or x <= self.high)
                and (self.above is None or x > self.above) and (self.below is None or x < self.below))

    def _lower(self) -> tuple[str, float] | None:
        return (">", self.above) if self.above is not None else (">=", self.low) if self.low is not None else None

    def _upper(self) -> tuple[str, float] | None:
        return ("<", self.below) if self.below is not None else ("<=", self.high) if self.high is not None else None

    def bounds(self) -> str:
        """The bounds on numbers: '> 0', '>= 1', 'in [0, 1)'; '' when there are none."""
        lo, hi = self._lower(), self._upper()
        if lo and hi:
            return f"in {'(' if lo[0] == '>' else '['}{lo[1]:g}, {hi[1]:g}{')' if hi[0] == '<' else ']'}"
        bound = lo or hi
        return f"{bound[0]} {bound[1]:g}" if bound else ""

    def pair_bounds(self) -> str:
        """The bounds on an ordered pair (a, b): '0 < a <= b <= 1'."""
        lo, hi = self._lower(), self._upper()
        left = f"{lo[1]:g} {lo[0].replace('>', '<')} " if lo else ""
        right = f" {hi[0]} {hi[1]:g}" if hi else ""
        return f"{left}a <= b{right}"

    def __str__(self) -> str:
        """What the docs and the help show, e.g. '> 0', '0 < a <= b <= 1', 'adamw, lars, sgd', '>= 1 or auto'."""
        parts = [self.pair_bounds() if self.ordered else self.bounds(), ", ".join(self.choices or ())]
        return " or ".join(p for p in parts if p)


def opt(default: Any, help: str, paper: Any = None, *, low: float | None = None, high: float | None = None,
        above: float | None = None, below: float | None = None, choices: tuple[str, ...] | None = None,
        ordered: bool = False) -> Any:
    """A dataclass field with help text; `paper` is the official value when the CPU default differs; the other
    keywords declare the values allowed (see `Allowed`)."""
    allowed = Allowed(low, high, above, below, tuple(choices) if choices else None, ordered)
    meta = {"help": help, "paper": paper, "allowed": allowed if allowed != Allowed() else None}
    if isinstance(default, (list, dict, tuple)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def allowed(f: dataclasses.Field) -> Allowed:
    """The values a field allows (no constraint beyond its type when none were declared)."""
    return f.metadata.get("allowed") or Allowed()


def describe(cls: type) -> list[tuple[str, Any, str, Any]]:
    """(name, default, help, paper value) for each option of a dataclass; the help ends with the values
    allowed when they were declared."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f.metadata.get("help", "")
        if str(allowed(f)):
            text += f" Allowed: {allowed(f)}."
        rows.append((f.name, default, text, f.metadata.get("paper")))
    return rows
