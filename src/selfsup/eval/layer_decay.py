"""Parameter groups with layer-wise learning-rate decay for fine-tuning (BEiT, Bao et al., 2021; MAE).

Follows MAE's `util/lr_decay.py` (`param_groups_lrd`): a ViT of depth L has layers 0 .. L+1 with
`patch_embed`, `cls_token` and `pos_embed` at layer 0, block i at layer i + 1, and everything after the
blocks (final `norm`, the classification head) at layer L + 1. Layer l's learning rate is scaled by
`decay ** (L + 1 - l)`, so the head trains at the full rate and the patch embedding at `decay ** (L + 1)`.
1-d parameters (biases, norm scales) and `pos_embed` / `cls_token` get no weight decay (MAE's
`no_weight_decay` list). ResNets get no layer decay: every scale is 1, only the weight-decay split applies.

Each group carries `lr_scale`; the training loop sets `group["lr"] = lr * group["lr_scale"]` every step.
"""

from __future__ import annotations

from torch import nn

from selfsup.models.vit import VisionTransformer

NO_WEIGHT_DECAY = ("pos_embed", "cls_token")  # MAE's model.no_weight_decay(), names relative to the ViT


def vit_layer_id(name: str, depth: int) -> int:
    """Layer index of a ViT parameter (name relative to the ViT): 0 embeddings, i + 1 block i, depth + 1 rest."""
    if name in NO_WEIGHT_DECAY or name.startswith("patch_embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def skips_weight_decay(name: str, ndim: int) -> bool:
    """Biases, norm scales (any 1-d parameter), pos_embed and cls_token are not decayed."""
    return ndim == 1 or name.endswith(".bias") or name.split(".")[-1] in NO_WEIGHT_DECAY


def find_vit(model: nn.Module) -> tuple[str, VisionTransformer] | None:
    """The (prefix, module) of the first VisionTransformer in `model` (prefix '' for the model itself)."""
    for prefix, module in model.named_modules():
        if isinstance(module, VisionTransformer):
            return (prefix + "." if prefix else ""), module
    return None


def lr_scales(model: nn.Module, layer_decay: float = 1.0) -> dict[str, float]:
    """Learning-rate scale of each trainable parameter of `model`, by name.

    With a ViT inside `model` (e.g. a classifier whose `backbone` is one), its parameters are scaled by
    `layer_decay ** (depth + 1 - layer_id)` and every parameter outside it (the head) by 1. Models without a
    ViT (ResNets) and `layer_decay == 1` give 1 everywhere.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    found = find_vit(model)
    if found is None or layer_decay == 1.0:
        return dict.fromkeys(names, 1.0)
    prefix, vit = found
    depth = len(vit.blocks)
    scales = {}
    for n in names:
        layer = vit_layer_id(n[len(prefix):], depth) if n.startswith(prefix) else depth + 1
        scales[n] = layer_decay ** (depth + 1 - layer)
    return scales


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW parameter groups, one per (lr scale, decayed or not): {"params", "weight_decay", "lr_scale",
    "names"}. The optimiser ignores the extra keys; `lr_scale` is applied by the training loop."""
    scales = lr_scales(model, layer_decay)
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = skips_weight_decay(name, p.ndim)
        key = (scales[name], no_wd)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr_scale": scales[name],
                           "weight_decay": 0.0 if no_wd else weight_decay}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


__all__ = ["find_vit", "lr_scales", "param_groups", "skips_weight_decay", "vit_layer_id"]
