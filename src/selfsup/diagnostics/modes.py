"""Which collapse a run's logged diagnostics show, read off one logging interval's values (a dict).

- "embedding": every image gets nearly one vector: the L2-normalised embeddings barely vary over the batch,
  `emb_std` (or `backbone_std`) below a tenth of its 1/sqrt(d) reference (SimSiam's measure; 0 when every image
  gets one vector), or they lie near one line, `emb_rank` (RankMe's effective rank of the embeddings) below 1.5.
  The rank catches what the std misses: SimSiam without a predictor or stop-gradient (docs/ablations) keeps its
  std at a quarter of the reference while its embeddings' rank falls to 1.1-1.3 (healthy runs: 5 and above).
- "one-prototype": DINO's KL near 0 with teacher entropy near 0 (sharpening without centring).
- "uniform": DINO's KL near 0 with teacher entropy near log K (centring without sharpening).
Shared by the engine's collapse warning and `selfsup ablate`'s check of the seeds' collapse findings.
"""

from __future__ import annotations

from collections.abc import Mapping

STD_SHARE = 0.1  # "embedding" below this share of the isotropic 1/sqrt(d) std
RANK_FLOOR = 1.5  # or with the embeddings' effective rank below this (1: on one line)
KL_SHARE = 0.01  # DINO's KL "near 0": below this share of log K
ENTROPY_SHARE = 0.1  # teacher entropy "near 0" below this share of log K, "near log K" above 1 - this share

MODES = ("embedding", "one-prototype", "uniform")


def collapse_modes(values: Mapping[str, float]) -> list[str]:
    """The collapse modes (of MODES) that `values` show; [] for a healthy interval or missing diagnostics."""
    modes = []
    if low_std(values) or low_rank(values):
        modes.append("embedding")
    if {"teacher_entropy", "teacher_student_kl", "log_K"} <= set(values):
        h, kl, log_k = values["teacher_entropy"], values["teacher_student_kl"], values["log_K"]
        if kl < KL_SHARE * log_k and h < ENTROPY_SHARE * log_k:
            modes.append("one-prototype")
        elif kl < KL_SHARE * log_k and h > (1 - ENTROPY_SHARE) * log_k:
            modes.append("uniform")
    return modes


def low_std(values: Mapping[str, float]) -> list[str]:
    """The std keys (emb_std, backbone_std) below STD_SHARE of their 1/sqrt(d) reference."""
    return [k for k in ("emb_std", "backbone_std")
            if k in values and f"{k}_ideal" in values and values[k] < STD_SHARE * values[f"{k}_ideal"]]


def low_rank(values: Mapping[str, float]) -> bool:
    """The embeddings' effective rank below RANK_FLOOR (nan, a diverged step, is not a collapse)."""
    return values.get("emb_rank", RANK_FLOOR) < RANK_FLOOR
