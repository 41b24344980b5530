"""InfoNCE, the contrastive cross-entropy shared by SimCLR (NT-Xent), MoCo v2 and MoCo v3.

Each anchor q_i is scored against a set of candidates by cosine similarity / temperature; the loss is the
cross-entropy of picking its positive among them:
    l_i = -log exp(q_i . k_p(i) / T) / sum_j exp(q_i . k_j / T),     q, k L2-normalised.
Candidates excluded for an anchor (SimCLR: the anchor itself) are left out of the sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query: torch.Tensor, keys: torch.Tensor, positive: torch.Tensor, temperature: float,
             exclude: torch.Tensor | None = None) -> torch.Tensor:
    """query (N, d), keys (M, d), positive (N,) index into keys, exclude (N,) index or None -> mean loss."""
    logits = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T / temperature  # (N, M)
    if exclude is not None:
        logits = logits.scatter(1, exclude[:, None], float("-inf"))
    return F.cross_entropy(logits.float(), positive)
