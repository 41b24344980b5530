"""InfoNCE, the contrastive cross-entropy shared by SimCLR (NT-Xent), MoCo v2 and MoCo v3.

Each anchor q_i is scored against a set of candidates by cosine similarity / temperature; the loss is the
cross-entropy of picking its positive among them:
    l_i = -log exp(q_i . k_p(i) / T) / sum_j exp(q_i . k_j / T),     q, k L2-normalised.
Candidates excluded for an anchor (SimCLR: the anchor itself) are left out of the sum. The decoupled
variant (DCL, Yeh et al., 2022, eq. 3) leaves the positive out of the denominator too,
    l_i = -q_i . k_p(i) / T + log sum_{j != p(i)} exp(q_i . k_j / T),
which removes the positive-negative coupling that slows learning with small batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.methods.precision import fp32


@fp32
def info_nce(query: torch.Tensor, keys: torch.Tensor, positive: torch.Tensor, temperature: float,
             exclude: torch.Tensor | None = None, decoupled: bool = False) -> torch.Tensor:
    """query (N, d), keys (M, d), positive (N,) index into keys, exclude (N,) index or None -> mean loss."""
    logits = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T / temperature  # (N, M)
    if exclude is not None:
        logits = logits.scatter(1, exclude[:, None], float("-inf"))
    if not decoupled:
        return F.cross_entropy(logits.float(), positive)
    logits = logits.float()
    positives = logits.gather(1, positive[:, None]).squeeze(1)  # (N,)
    return (logits.scatter(1, positive[:, None], float("-inf")).logsumexp(1) - positives).mean()
