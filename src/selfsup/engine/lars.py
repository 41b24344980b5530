"""LARS (You et al., 2017) as used by SimCLR, BYOL, Barlow Twins, SwAV, VICReg and MoCo v3 for large batches.

Each parameter's update d = g + wd * w is scaled by the trust ratio eta * ||w|| / ||d|| (1 where either norm
is 0), then SGD momentum is applied: mu <- momentum * mu + d', w <- w - lr * mu (barlowtwins main.py LARS,
lines 224-262). eta is 0.001 in every official code: barlowtwins and vicreg `eta=0.001`, moco-v3
`trust_coefficient=0.001`, SimCLR's lars_optimizer.py `EETA_DEFAULT = 0.001`, BYOL's `eta=1e-3`, and
SwAV's apex LARC `trust_coefficient=0.001, clip=False` (LARC divides by ||g|| + wd ||w||, the same up to
wd ~1e-6). There is no clipping of the ratio. Groups marked `lars_exclude` (biases and norms, unless
--optim.decay-norm-bias) are neither decayed nor adapted, as in those codes; SwAV's LARC adapts every
parameter.
"""

from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.0, weight_decay: float = 0.0, momentum: float = 0.9,
                 eta: float = 0.001) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every parameter with a gradient, group by group in a few multi-tensor (foreach) ops
        rather than a Python loop of small ones per parameter."""
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if g["lars_exclude"]:
                d = list(grads)
            else:
                d = torch._foreach_add(grads, params, alpha=g["weight_decay"])
                w_norm = torch.stack(torch._foreach_norm(params))  # (n,)
                d_norm = torch.stack(torch._foreach_norm(d))
                trust = torch.where((w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm, 1.0)
                torch._foreach_mul_(d, list(trust.unbind()))
            bufs = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(bufs, g["momentum"])  # a new buffer is 0: its first value is d, as in the codes
            torch._foreach_add_(bufs, d)
            torch._foreach_add_(params, bufs, alpha=-g["lr"])
        return loss
