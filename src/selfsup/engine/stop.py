"""A run's stop request: SIGINT or SIGTERM ask the loop to checkpoint and return at the end of the step."""

from __future__ import annotations

import signal
from typing import Any


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop checkpoints and returns at the end of the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
