"""The split of a distillation loss into entropy and divergence (DINO thesis, eq. 5.1; Caron et al. 2021, Sec. 5.3):

    H(P_t, P_s) = h(P_t) + KL(P_t || P_s)

A KL near 0 means the student reproduces a teacher that no longer depends on the image: collapse. Its two
forms are told apart by h: near 0, one prototype wins for every image (no centring); near log K, uniform
outputs (no sharpening). Each term is computed on its own here (not one from the other two), averaged over
the (teacher view, student view) pairs of the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def entropy_split(q: torch.Tensor, logp: torch.Tensor, pairs: torch.Tensor) -> dict[str, float]:
    """Teacher probabilities q (G, B, K), student log-probabilities logp (V, B, K) and the (G, V) bool mask of
    the pairs in the loss -> mean over pairs of `teacher_entropy` h(P_t), `teacher_student_kl` KL(P_t || P_s)
    and `cross_entropy` H(P_t, P_s), all in nats, plus `log_K` (h's maximum)."""
    q, logp = q.float(), logp.float()
    h = -torch.xlogy(q, q).sum(-1).mean(-1)  # (G,)
    cross = -torch.einsum("ibk,vbk->iv", q, logp) / q.shape[1]  # (G, V)
    kl = torch.stack([F.kl_div(logp[v], q[i], reduction="batchmean") for i, v in pairs.nonzero().tolist()])
    return {"teacher_entropy": float(h[:, None].expand_as(pairs)[pairs].mean()),
            "teacher_student_kl": float(kl.mean()), "cross_entropy": float(cross[pairs].mean()),
            "log_K": math.log(q.shape[-1])}


@torch.no_grad()
def batch_entropy(q: torch.Tensor) -> float:
    """Entropy of the batch-mean distribution of q (..., K): near 0 when every image goes to one prototype."""
    pm = q.float().reshape(-1, q.shape[-1]).mean(0)  # (K,)
    return float(-torch.xlogy(pm, pm).sum())


@torch.no_grad()
def weighted_entropy_split(q: torch.Tensor, logp: torch.Tensor, weights: torch.Tensor, prefix: str = "patch_"
                           ) -> dict[str, float]:
    """The split for a loss on tokens (iBOT's patch loss): teacher probabilities q (M, K) and student
    log-probabilities logp (M, K) of M tokens, averaged with `weights` (M,) (normalised to sum 1; the loss's
    own, so that `{prefix}cross_entropy` is the loss per weighted token) -> `{prefix}teacher_entropy`,
    `{prefix}teacher_student_kl`, `{prefix}cross_entropy` (nats) and `{prefix}teacher_batch_entropy` (of the
    tokens' mean distribution); {} without tokens."""
    if not len(q):
        return {}
    q, logp = q.float(), logp.float()
    w = weights.float() / weights.float().sum()  # (M,)
    qlogq = torch.xlogy(q, q)  # (M, K)
    h, kl, cross = -qlogq.sum(-1), (qlogq - q * logp).sum(-1), -(q * logp).sum(-1)  # (M,) each
    return {f"{prefix}teacher_entropy": float(w @ h), f"{prefix}teacher_student_kl": float(w @ kl),
            f"{prefix}cross_entropy": float(w @ cross), f"{prefix}teacher_batch_entropy": batch_entropy(q)}
