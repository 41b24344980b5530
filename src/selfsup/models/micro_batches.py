"""Gradient accumulation that keeps the whole batch in the loss: the backbone runs on micro-batches.

Accumulating gradients over k separately computed micro-batches is exact only for losses that are means of
per-image terms. The joint-embedding losses are not: SimCLR's and MoCo v3's negatives are the other images
of the batch, DINO's centre is the batch mean of the teacher's outputs, SwAV's codes come from Sinkhorn over
the batch, Barlow Twins and VICReg read the batch's correlations. selfsup therefore accumulates where the
memory is, in the backbone: its per-image computation runs on k parts of the batch, each under activation
checkpointing (torch.utils.checkpoint), so only the part's inputs and outputs are kept and its activations
are recomputed, one part at a time, in backward. The heads and the loss see the whole batch at once, and the
gradient is that of the one-batch step (GradCache, Gao et al. 2021, reaches the same by a cached second
pass). Cost: one more backbone forward per step (about a third more compute); memory: the backbone's
activations of one part instead of the batch.

Exact for the ViT. A ResNet's BatchNorm normalises each part with the part's own statistics, as each
process does under DDP without synchronised BatchNorm; its running statistics are updated once per part,
not again by the recomputation. Random ops (stochastic depth, patch dropout) draw per part: the same
distribution as one batch, not the same numbers; the recomputation replays the part's own draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from selfsup.models.running_stats import RunningStats

Outputs = tuple[torch.Tensor, ...]


@contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics as they were before: the recomputation must not update them twice."""
    stats = RunningStats(module)
    try:
        yield
    finally:  # also when torch stops the recomputation early, as soon as it has what backward needs
        stats.restore()


def micro_batched(fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, parts: int, module: nn.Module
                  ) -> Outputs:
    """`fn(x)` for a per-image `fn` returning a tuple of (B, ...) tensors, computed on `parts` chunks of the
    batch with recomputed activations when gradients are on (see the module docstring); `module` is the one
    `fn` runs, whose BatchNorm statistics the recomputation leaves alone. Without gradients (a teacher,
    evaluation), or with parts <= 1, it is just `fn(x)`."""
    if parts <= 1 or x.shape[0] < 2 or not torch.is_grad_enabled():
        return fn(x)
    def contexts() -> tuple:  # nothing around the first forward; statistics kept around the recomputation
        return nullcontext(), _running_stats_kept(module)

    outs = [checkpoint(fn, part, use_reentrant=False, context_fn=contexts) for part in x.chunk(parts)]
    return tuple(torch.cat(column) for column in zip(*outs, strict=True))
