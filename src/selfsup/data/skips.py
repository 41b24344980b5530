"""Unreadable files met while streaming: each is replaced by another image of its batch (batch sizes stay
fixed, the run goes on), counted once, and named in a warning as `image_folder` names the files it skips."""

from __future__ import annotations

import warnings

import numpy as np

Failure = tuple[str, str]  # (file name, "Type: message")

MAX_WARNINGS = 10  # further unreadable files are counted, not named


def fill_failed(images: list[np.ndarray | None]) -> list[np.ndarray]:
    """A batch with its unreadable entries (None) replaced by the next readable image (cyclically), so the
    batch keeps its size and the replacement depends only on the batch. At least one entry must be readable."""
    good = [i for i, a in enumerate(images) if a is not None]
    if not good:
        raise ValueError("no readable image in the batch")
    return [a if a is not None else images[next((g for g in good if g > i), good[0])]
            for i, a in enumerate(images)]


class SkipReport:
    """The unreadable files of one streamed source (`where`: its folder or shards), each counted once."""

    def __init__(self, where: str, how: str = "each replaced by another image of its batch") -> None:
        self.where, self.how = where, how  # how: what became of the skipped files, for the warning
        self.files: dict[str, str] = {}
        self.warnings = 0

    @property
    def count(self) -> int:
        return len(self.files)

    def add(self, failed: list[Failure]) -> None:
        """Count the files in `failed` not seen before, and name them in a warning (the first few times)."""
        new = {name: why for name, why in failed if name not in self.files}
        if not new:
            return
        self.files.update(new)
        if self.warnings < MAX_WARNINGS:
            self.warnings += 1
            names = ", ".join(f"{name} ({why})" for name, why in list(new.items())[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            last = "; further ones are counted, not named" if self.warnings == MAX_WARNINGS else ""
            warnings.warn(f"{self.where}: skipped {len(new)} unreadable image file(s), {self.how}: "
                          f"{names}{more} ({self.count} so far{last})", stacklevel=2)

    def notice(self) -> str | None:
        """One line for the run's summary, or None when every file was readable."""
        return f"skipped {self.count} unreadable image file(s)" if self.count else None


__all__ = ["Failure", "SkipReport", "fill_failed"]
