"""The recipe for continuing pre-training from existing weights (`selfsup pretrain --init`), for the values the
user leaves open.

What the official repositories' users report (dino issues 85, 184, 207; dinov2 issues 204, 243, 507): restarting
from released weights with the from-scratch recipe spoils the features in the first steps, because the heads
start random (releases carry no heads) and their first updates run back through the backbone. The remedy they
converge on, and LightlyTrain's: train the fresh heads first with the backbone frozen, a lower learning rate,
and a teacher momentum close to 1. benchmarks/continue_screen.py measured those factors on a validation split
(docs/continue_screen.md: SimCLR continued from the demo's network for 4 CPU minutes, about 2 epochs). The
learning rate separated them: 0.3x the from-scratch one gained 0.3 k-NN points over the source, 1x none, 0.1x
0.1. The heads-first phase and a frozen patch embedding moved the result by less than a rerun does; the first
is kept as the users' insurance against large random heads (DINO's 65,536 prototypes), the second is not. The
teacher momentum was not screened (SimCLR has no teacher): 0.9995 is the users' report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from selfsup.config import build_config

LR_SCALE = 0.3  # x the method's from-scratch learning rate
OPTIM = {"warmup_epochs": 0.3, "freeze_backbone_epochs": 0.2}
TEACHER_MOMENTUM = 0.9995
MOMENTUM_FIELDS = ("momentum_teacher", "momentum")  # a method's EMA teacher or momentum encoder option


def continuing_values(user: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """{"optim.lr": ..., ...}: the continuing recipe's values for `user`'s configuration (YAML and flags, nested;
    the caller keeps only those the user left open), and a line saying what they are."""
    cfg = build_config(user, "continuing recipe")
    values = {"optim.lr": cfg.optim.lr * LR_SCALE, **{f"optim.{k}": v for k, v in OPTIM.items()}}
    fields = {f.name for f in dataclasses.fields(cfg.method_cfg)} if cfg.method_cfg is not None else set()
    momentum = next((f for f in MOMENTUM_FIELDS if f in fields), None)
    if momentum:
        values[f"{cfg.method}.{momentum}"] = TEACHER_MOMENTUM
    words = (f"--init: the continuing recipe (docs/continue_screen.md): lr {LR_SCALE:g}x the {cfg.method} recipe's, "
             f"{OPTIM['warmup_epochs']:g} warm-up epochs, the backbone frozen for the first "
             f"{OPTIM['freeze_backbone_epochs']:g} epochs while the fresh heads learn"
             + (f", teacher momentum {TEACHER_MOMENTUM:g}" if momentum else ""))
    return values, words


def sets(path: str) -> bool:
    """Whether the continuing recipe chooses "section.option" `path` (when the user leaves it open)."""
    section, _, name = path.partition(".")
    return path == "optim.lr" or (section == "optim" and name in OPTIM) or (section != "optim"
                                                                            and name in MOMENTUM_FIELDS)
