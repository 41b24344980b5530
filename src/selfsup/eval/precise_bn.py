"""Precise BatchNorm statistics: recompute the running mean/variance of every BatchNorm layer from
training images after training (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm", section 3).

The running averages kept during training (momentum 0.1) lag behind the weights, and after a short run
they still remember their initial values (0 / 1 for a network trained from scratch): a ResNet trained
for a dozen steps then predicts one class in eval mode although it fits the data in train mode. One
forward pass over some un-augmented training images fixes that: each layer's running mean and variance become
the mean and variance of everything it saw, every image weighing the same whatever batch it came in (fvcore's
`_PopulationVarianceEstimator`, facebookresearch/fvcore fvcore/nn/precise_bn.py, rather than the plain mean
of per-batch statistics, which over-weights a short last batch and leaves out the spread between batch means).
The pass runs in train mode, so a layer's input depends on the batch statistics of the layers before it: pass
the batch size of training (`finetune` does), never an inference batch size, and the statistics are those of
the model as trained. Models without BatchNorm (ViTs) are left untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Moments:
    """Count, mean and sum of squared deviations per channel of a BatchNorm layer's inputs, merged batch by
    batch in float64 (Chan et al.'s pairwise update), so that the result does not depend on the split."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = self.m2 = torch.zeros(())

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().transpose(0, 1).flatten(1).float()  # (C, B * spatial)
        n_b = x.shape[1]
        mean_b = x.mean(1)  # (C,)
        m2_b = (x - mean_b[:, None]).square().sum(1)  # (C,)
        mean_b, m2_b = mean_b.double().cpu(), m2_b.double().cpu()
        total = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta.square() * (self.n * n_b / total)
        self.n = total

    def store(self, bn: nn.Module) -> None:
        """The population mean and (biased, as fvcore's) variance into `bn`'s running statistics."""
        bn.running_mean.copy_(self.mean.to(bn.running_mean))
        bn.running_var.copy_((self.m2 / self.n).to(bn.running_var))


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive batches of `batch_size` over n images; a lone last image joins the batch
    before it (BatchNorm cannot normalise one sample in train mode)."""
    bounds = [*range(0, n, batch_size), n]
    if len(bounds) > 2 and n - bounds[-2] == 1:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                       batch_size: int = 256, max_images: int = 4096, device: str | torch.device = "cpu") -> int:
    """Reset and re-estimate BN running statistics from the first `max_images` uint8 images (N, C, H, W),
    passed through the model in train mode in batches of `batch_size` (see the module's docstring).

    Returns the number of BN layers updated (0: nothing to do). The model is left in eval mode; its
    weights are unchanged.
    """
    bns = [m for m in model.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]
    if not bns:
        return 0
    moments = [_Moments() for _ in bns]
    hooks = [bn.register_forward_pre_hook(m) for bn, m in zip(bns, moments, strict=True)]
    model.train()
    try:
        for start, stop in batch_bounds(min(len(images), max_images), batch_size):
            model(prepare(images[start:stop].to(device).float().div_(255)))
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    for bn, m in zip(bns, moments, strict=True):
        if m.n:  # no images: the statistics stay as they were
            m.store(bn)
    return len(bns)


__all__ = ["batch_bounds", "recompute_bn_stats"]
