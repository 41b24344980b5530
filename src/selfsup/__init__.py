"""selfsup: self-supervised visual representation learning: pre-train without labels, evaluate, inspect, fine-tune.

    import selfsup
    backbone = selfsup.load_backbone("runs/dino")  # a run directory, a backbone.safetensors, or an official file
    backbone = selfsup.load_backbone("dino_deitsmall16_pretrain.pth", source="dino")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_backbone(path: str | Path, source: str | None = None, *, return_spec: bool = False, **options: Any):
    """The backbone at `path` in eval mode, mapping normalised images (B, C, H, W) to features (B, feature_dim).

    `path` is a run directory, a backbone.safetensors (selfsup's, with its spec) or an official checkpoint:
    `source` names its layout, one of "dino", "dinov2", "mae", "moco-v3", "timm" (None: guessed from the file's
    keys; a layout two sources share, e.g. {'model': ...} of MAE and MoCo v3, is refused naming them). For
    official files `options` are those of `selfsup.models.convert.convert_checkpoint`: backbone ("vit-small",
    ...), patch_size, width, depth (checked against or read off the tensors, as are registers, LayerScale and
    SwiGLU), num_heads, pos_interp, mean, std and pool (default: the source's, models/sources.py) and student
    (DINO's student instead of its teacher). Inputs are normalised with the spec's mean and std;
    `return_spec=True` returns (backbone, spec) to read them.
    """
    from selfsup.models.convert import load_pretrained

    model, spec = load_pretrained(path, source, **options)
    return (model, spec) if return_spec else model


__all__ = ["load_backbone"]
