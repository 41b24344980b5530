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
    `source` names its layout, one of "dino", "mae", "moco-v3", "timm" (None: guessed from the file; a bare
    state_dict without a classifier head is taken for DINO's). For official files `options` are those of
    `selfsup.models.convert.convert_checkpoint`: backbone ("vit-small", ...), patch_size, width, depth, num_heads
    (checked against or read off the tensors), pos_interp ("dino" or "size") and student (DINO's student instead
    of its teacher). Inputs are normalised with the spec's mean and std (ImageNet's for official weights);
    `return_spec=True` returns (backbone, spec) to read them.
    """
    from selfsup.models.convert import load_pretrained

    model, spec = load_pretrained(path, source, **options)
    return (model, spec) if return_spec else model


__all__ = ["load_backbone"]
