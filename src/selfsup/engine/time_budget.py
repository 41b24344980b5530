"""The clock of a training run: its training time (evaluations left out), and for a --minutes run the plan's
re-measurements and the deadline.

A --minutes run plans its step count from a calibration of a few steps before it starts (`Trainer._calibrate`).
A busy machine or a slow start can skew that: the run re-measures its real speed a tenth of the way in, half-way
and at four fifths (`check_steps`), and the Trainer re-plans its length and schedules for the time left. A run
still going at SLACK x its budget is cut short (`late`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class TimeBudget:
    SLACK = 1.1  # a --minutes run is stopped 10% after its budget, whatever its plan says
    MARK = 5  # the first steps pay for allocation: a run's own speed is timed from this step on
    CHECKS = (0.1, 0.5, 0.8)  # shares of the plan at which a fresh --minutes run re-measures its speed

    def __init__(self, minutes: float | None, prior_seconds: float = 0.0, fresh: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        """`prior_seconds`: training time of the run before this process (a resume); only a `fresh` run
        re-measures its speed (a resumed one keeps the plan it saved)."""
        self.minutes, self.prior, self.fresh, self.clock = minutes, prior_seconds, fresh, clock
        self.started = self.excluded = 0.0
        self.mark: float | None = None
        self.next_check: int | None = None

    def start(self, total_steps: int) -> None:
        self.started, self.excluded = self.clock(), 0.0
        self.next_check = self.check_after(0, total_steps)

    @contextlib.contextmanager
    def excluded_time(self) -> Iterator[None]:
        """Time spent inside (an evaluation) is not training time: the deadline moves by as much."""
        t0 = self.clock()
        try:
            yield
        finally:
            self.excluded += self.clock() - t0

    def seconds(self) -> float:
        """This process's training seconds so far."""
        return self.clock() - self.started - self.excluded

    def run_seconds(self) -> float:
        """The run's training seconds over every resume."""
        return self.prior + self.seconds()

    def late(self) -> bool:
        return self.minutes is not None and self.seconds() > self.SLACK * 60 * self.minutes

    def observe(self, done: int, total_steps: int) -> float | None:
        """Called after each step with the steps `done` (counted from the run's start): at a check, the seconds a
        step took since MARK (the Trainer re-plans with it, then calls `replanned`); else None."""
        if done == self.MARK:
            self.mark = self.seconds()
        if done != self.next_check or self.mark is None:
            return None
        return (self.seconds() - self.mark) / (done - self.MARK)

    def replanned(self, done: int, total_steps: int) -> None:
        """After the check at `done`, the next one for a plan of `total_steps`."""
        self.next_check = self.check_after(done, total_steps)

    def left(self) -> float:
        """Seconds of the budget left."""
        return 60 * self.minutes - self.seconds() if self.minutes is not None else float("inf")

    def check_after(self, after: int, total_steps: int) -> int | None:
        """The step after `after` at which a fresh --minutes run re-measures its speed: a tenth into the run (at
        least step 20), half-way and four fifths through the plan, each at least a tenth of the plan (and 20
        steps) after the previous one, so that a re-plan does not bring the same mark back at once. The last
        check catches a machine that slowed down in the second half, which would otherwise overrun the budget."""
        if self.minutes is None or not self.fresh:
            return None
        gap = max(20, total_steps // 10)
        check = next((m for f in self.CHECKS if (m := max(20, int(f * total_steps))) >= after + gap), None)
        return check if check is not None and check < total_steps - 1 else None
