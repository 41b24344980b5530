"""Running statistics of the normalisation layers, copied before a forward and put back if the step is skipped.

A forward in training mode updates every BatchNorm's running mean, variance and batch count (the student's,
a teacher's, a key encoder's) before the engine can know whether the loss is finite; a NaN batch would
leave NaN statistics behind, which evaluation then uses. The methods keep every other state change for
`on_after_step` (methods/base.py), so these buffers are all a skipped step has to undo. Copying them is
cheap: one fused copy of a few hundred small tensors (~0.2 MB for a ResNet-50), nothing for a ViT.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase


def running_buffers(module: nn.Module) -> list[torch.Tensor]:
    """running_mean, running_var and num_batches_tracked of every BatchNorm/InstanceNorm that tracks them."""
    out = []
    for m in module.modules():
        if isinstance(m, _NormBase) and m.track_running_stats:
            out += [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    return out


class RunningStats:
    """`save()` before the forward, `restore()` on a skipped step. Build it once the module sits on its
    device (after Fabric's setup): it holds the buffers themselves, which moving the module replaces."""

    def __init__(self, module: nn.Module) -> None:
        self.buffers = running_buffers(module)
        self.saved = [b.detach().clone() for b in self.buffers]

    def save(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.saved)
