"""Option declarations: `opt()` keeps its old form and declares the values allowed, which the help and docs show."""

from dataclasses import dataclass

import pytest

from selfsup.options import Allowed, describe, opt


@pytest.mark.parametrize(("allowed", "text"), [
    (Allowed(above=0), "> 0"), (Allowed(low=1), ">= 1"), (Allowed(high=3), "<= 3"),
    (Allowed(low=0, high=1), "in [0, 1]"),
    (Allowed(above=0, below=1), "in (0, 1)"), (Allowed(above=0, high=1, ordered=True), "0 < a <= b <= 1"),
    (Allowed(ordered=True), "a <= b"), (Allowed(choices=("sgd", "adamw")), "sgd, adamw"),
    (Allowed(low=1, choices=("auto",)), ">= 1 or auto"), (Allowed(low=1e-6), ">= 1e-06"), (Allowed(), "")])
def test_what_is_allowed_reads_as_written(allowed, text):
    assert str(allowed) == text


def test_bounds_are_inclusive_or_exclusive_as_declared():
    assert Allowed(low=0, high=1).admits(0) and Allowed(low=0, high=1).admits(1)
    assert not Allowed(above=0).admits(0) and not Allowed(below=1).admits(1) and Allowed(above=0).admits(1e-9)


def test_the_help_shows_what_is_allowed_and_old_declarations_still_work():
    @dataclass
    class Options:
        lr: float = opt(0.1, "A rate.", 0.3, above=0)
        steps: list[int] = opt([1, 2], "Counts.")

    assert describe(Options) == [("lr", 0.1, "A rate. Allowed: > 0.", 0.3), ("steps", [1, 2], "Counts.", None)]
    assert Options().steps is not Options().steps
