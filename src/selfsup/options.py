"""Declaring options once: a dataclass field carries its default, help (with tuning advice) and the
paper's value, so the command line, the YAML recipes and the docs are all generated from the same place."""

from __future__ import annotations

import dataclasses
from typing import Any


def opt(default: Any, help: str, paper: Any = None) -> Any:
    """A dataclass field with help text; `paper` is the official value when the CPU default differs."""
    meta = {"help": help, "paper": paper}
    if isinstance(default, (list, dict, tuple)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe(cls: type) -> list[tuple[str, Any, str, Any]]:
    """(name, default, help, paper value) for each option of a dataclass."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, default, f.metadata.get("help", ""), f.metadata.get("paper")))
    return rows
