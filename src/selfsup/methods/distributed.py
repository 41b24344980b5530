"""Collectives the methods share: gathering embeddings across processes, with or without gradients.

With DDP each process computes its loss on its own batch and DDP averages the gradients. A loss that
compares local embeddings against embeddings gathered from every process (SimCLR negatives, Barlow Twins'
cross-correlation, VICReg's covariance) needs the gradient w.r.t. the *other* processes' embeddings too:
`gather_with_grad` all-reduces (sums) the incoming gradient in backward, so the averaged DDP gradient equals
the gradient of the mean of the per-process losses, i.e. of the loss on the concatenated batch
(tests/methods/test_ddp_methods.py checks this).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each process -> (world*B, ...) in rank order, without gradient."""
    if world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x.contiguous())
        ctx.batch = x.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss depends on this process's slice
        return grad[rank() * ctx.batch:(rank() + 1) * ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each process -> (world*B, ...) in rank order; gradients flow back to every process."""
    return x if world_size() == 1 else _GatherWithGrad.apply(x)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place on a copy); identity when not distributed."""
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over processes; identity when not distributed."""
    return all_reduce_sum(x) / world_size() if world_size() > 1 else x


@torch.no_grad()
def shuffle_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's shuffled BN: a random permutation of the global batch, this process's share of it, and the
    inverse permutation to undo it. Each process then normalises a random mix of every process's images,
    so BatchNorm statistics cannot leak which key matches which query."""
    full = gather(x)  # (world*B, ...)
    perm = torch.randperm(full.shape[0], device=x.device)
    if world_size() > 1:
        dist.broadcast(perm, src=0)
    b = x.shape[0]
    return full[perm[rank() * b:(rank() + 1) * b]], torch.argsort(perm)


@torch.no_grad()
def unshuffle_batch(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Undo `shuffle_batch` on its output's embeddings: this process's original samples, in order."""
    b = x.shape[0]
    return gather(x)[inverse[rank() * b:(rank() + 1) * b]]
