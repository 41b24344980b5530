"""A backbone on disk: safetensors weights plus the metadata needed to rebuild and feed it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from selfsup.models import build_backbone
from selfsup.models.vit import VIT_PRESETS


@dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild a backbone and prepare its input."""

    name: str
    img_size: int  # side the backbone was trained on (global crop size); evaluation resizes to it
    in_chans: int
    patch_size: int | None
    mean: list[float]  # per-channel input normalisation, in [0, 1] units
    std: list[float]
    pool: str = "cls"  # the ViT feature evaluated: one of vit.POOLS (ResNets average-pool)
    width: int | None = None  # ViT width and depth when not the preset's
    depth: int | None = None
    num_heads: int | None = None  # ViT attention heads when not width / the preset's channels per head
    pos_interp: str = "size"  # how a ViT resizes its position embeddings: vit.POS_INTERPS ("dino" for DINO's)
    stem: str = "patch"  # a ViT's patch embedding: vit.STEMS
    layerscale: float | None = None  # a ViT's LayerScale initial value (its blocks have ls1, ls2) or None
    registers: int = 0  # a ViT's register tokens
    ffn: str = "mlp"  # a ViT's feed-forward: vit.FFNS

    @property
    def feature(self) -> str:
        """What the backbone outputs: the ViT's pool, or "avgpool" for a ResNet (which ignores `pool`)."""
        return self.pool if self.name in VIT_PRESETS else "avgpool"

    def build(self) -> nn.Module:
        return build_backbone(self.name, self.img_size, self.in_chans, self.patch_size, pool=self.pool,
                              width=self.width, depth=self.depth, num_heads=self.num_heads,
                              pos_interp=self.pos_interp, stem=self.stem, layerscale=self.layerscale,
                              registers=self.registers, ffn=self.ffn)


class BackboneFileError(RuntimeError):
    """A backbone file that cannot be read or does not fit; the message names the file."""


def save_backbone(backbone: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Atomic write of the weights with the spec as JSON metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"selfsup_backbone": json.dumps(asdict(spec))})
    os.replace(tmp, path)


def load_backbone(path: Path) -> tuple[nn.Module, BackboneSpec]:
    """Rebuild the backbone saved at `path` and load its weights (strictly)."""
    if not path.is_file():
        raise BackboneFileError(f"no backbone file at {path}: pre-train first (selfsup pretrain --out DIR) "
                                "and pass that DIR to --checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            spec = BackboneSpec(**json.loads(f.metadata()["selfsup_backbone"]))
        state = load_file(str(path))
    except Exception as e:
        raise BackboneFileError(f"cannot read {path} as a selfsup backbone ({e}); re-export it by "
                                "re-running pretrain with --resume") from e
    model = spec.build()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneFileError(f"{path} does not fit backbone {spec.name} (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
    return model, spec


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB chunks): how a run names the weights it started from or distilled."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalizer(spec: BackboneSpec):
    """uint8 or [0, 1] float (B, C, H, W) -> normalised float at the backbone's training size."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != spec.img_size or x.shape[-2] != spec.img_size:
            x = torch.nn.functional.interpolate(x, size=(spec.img_size, spec.img_size), mode="bilinear",
                                                antialias=True, align_corners=False)
        return (x - mean.to(x.device)) / std.to(x.device)

    return prepare
