"""How a teacher built from the student follows it (DINO thesis, fig. 5.9; Caron et al. 2021, Sec. 5.2):

- momentum: an EMA of the student, `momentum[step]` per step (DINO's; a Polyak-Ruppert average);
- copy: the student itself, copied after every step (the thesis's 'momentum off');
- previous-iteration: the student's weights of the step before (copied before each optimiser step);
- previous-epoch: the student as it was at the last epoch boundary (copied after each epoch's last step).
The teacher is a `momentum_copy` of the student's modules; only parameters are copied (its BatchNorm
statistics stay its own, as the EMA's).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from selfsup.methods.momentum import ema_update

TEACHERS = ("momentum", "copy", "previous-iteration", "previous-epoch")


@torch.no_grad()
def copy_parameters(target: nn.Module, online: nn.Module) -> None:
    """target's parameters <- online's (buffers untouched)."""
    torch._foreach_copy_(list(target.parameters()), [p.detach() for p in online.parameters()])


class TeacherUpdate:
    """The teacher rule `kind` (of TEACHERS); `momentum` is the per-step EMA schedule (momentum only)."""

    def __init__(self, kind: str, momentum: np.ndarray, steps_per_epoch: int) -> None:
        if kind not in TEACHERS:
            raise ValueError(f"--dino.teacher {kind!r}: choose one of {', '.join(TEACHERS)}")
        self.kind, self.momentum, self.steps_per_epoch = kind, momentum, max(steps_per_epoch, 1)

    def before_step(self, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        """Between backward and the optimiser step, on (teacher, student) module pairs: the student still
        holds this step's weights."""
        if self.kind == "previous-iteration":
            for teacher, student in pairs:
                copy_parameters(teacher, student)

    def after_step(self, step: int, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        """After the optimiser step `step`, on (teacher, student) module pairs."""
        boundary = (step + 1) % self.steps_per_epoch == 0
        for teacher, student in pairs:
            if self.kind == "momentum":
                ema_update(teacher, student, float(self.momentum[step]))
            elif self.kind == "copy" or (self.kind == "previous-epoch" and boundary):
                copy_parameters(teacher, student)
