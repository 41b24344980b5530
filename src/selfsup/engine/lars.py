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
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not g["lars_exclude"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm, 1.0)
                    d = d * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return loss
