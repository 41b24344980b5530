"""A backbone on disk: safetensors weights plus the metadata needed to rebuild and feed it."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from selfsup.errors import SelfsupError
from selfsup.models import BACKBONES, build_backbone
from selfsup.models.vit import POOLS, POS_INTERPS, STEMS, VIT_PRESETS
from selfsup.models.vit_layers import FFNS


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


class BackboneFileError(SelfsupError, RuntimeError):
    """A backbone file that cannot be read or does not fit; the message names the file."""


def save_backbone(backbone: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Atomic write of the weights with the spec as JSON metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"selfsup_backbone": json.dumps(asdict(spec))})
    os.replace(tmp, path)


# The largest value each size field of a spec may hold: far above every backbone selfsup trains or converts
# (ViT-g: width 1536, depth 40; DINOv2 at 518 px), far below what would exhaust memory before the file is read.
SPEC_LIMITS = {"img_size": 4096, "in_chans": 16, "patch_size": 512, "width": 16384, "depth": 256, "num_heads": 1024,
               "registers": 256}
SPEC_CHOICES = {"name": BACKBONES, "pool": POOLS, "pos_interp": POS_INTERPS, "stem": STEMS, "ffn": tuple(FFNS)}


def check_spec(spec: BackboneSpec, path: Path) -> None:
    """Refuse, in one line naming the file, metadata that no backbone has (a field of the wrong type or an
    absurd size), before anything is built from it."""
    def refuse(what: str) -> BackboneFileError:
        return BackboneFileError(f"{path}: its metadata says {what}, which no selfsup backbone has: the file is "
                                 "damaged or was not written by selfsup (re-export it)")

    for name, top in SPEC_LIMITS.items():
        v, low = getattr(spec, name), 0 if name == "registers" else 1
        if v is None and name not in ("img_size", "in_chans", "registers"):
            continue
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= top:
            raise refuse(f"{name}={v!r} (expected an integer in [{low}, {top}])")
    for name, choices in SPEC_CHOICES.items():
        if getattr(spec, name) not in choices:
            raise refuse(f"{name}={getattr(spec, name)!r} (expected one of {', '.join(choices)})")
    for name in ("mean", "std"):
        v = getattr(spec, name)
        if not (isinstance(v, list) and len(v) == spec.in_chans
                and all(isinstance(x, int | float) and math.isfinite(x) for x in v)):
            raise refuse(f"{name}={v!r} (expected {spec.in_chans} finite numbers, one per channel)")
    if min(spec.std) <= 0:
        raise refuse(f"std={spec.std!r} (expected positive numbers)")
    if spec.layerscale is not None and not (isinstance(spec.layerscale, int | float)
                                            and math.isfinite(spec.layerscale)):
        raise refuse(f"layerscale={spec.layerscale!r} (expected a number or null)")


def check_shapes(spec: BackboneSpec, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """The backbone `spec` describes, built on the meta device (nothing allocated), against the tensors the
    file's header lists: the real build then allocates exactly what the file holds."""
    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
    except ValueError as e:
        raise BackboneFileError(f"{path}: its metadata describes no backbone ({e})") from e
    missing, unexpected = sorted(set(want) - set(shapes)), sorted(set(shapes) - set(want))
    wrong = [f"{k} {shapes[k]} (expected {want[k]})" for k in sorted(set(want) & set(shapes)) if want[k] != shapes[k]]
    if missing or unexpected or wrong:
        raise BackboneFileError(f"{path} does not fit backbone {spec.name} (missing {missing[:3]}, unexpected "
                                f"{unexpected[:3]}, other shapes {wrong[:3]}): re-export it")


def load_backbone(path: Path) -> tuple[nn.Module, BackboneSpec]:
    """Rebuild the backbone saved at `path` and load its weights (strictly). The metadata is checked first
    (`check_spec`, `check_shapes`), so a damaged or foreign file is one BackboneFileError, never a huge
    allocation."""
    if not path.is_file():
        raise BackboneFileError(f"no backbone file at {path}: pre-train first (selfsup pretrain --out DIR) "
                                "and pass that DIR to --checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            spec = BackboneSpec(**json.loads(f.metadata()["selfsup_backbone"]))
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise BackboneFileError(f"cannot read {path} as a selfsup backbone ({e}); re-export it by "
                                "re-running pretrain with --resume") from e
    check_spec(spec, path)
    check_shapes(spec, shapes, path)
    try:
        state = load_file(str(path))
    except Exception as e:  # a header that promises more bytes than a half-written file holds
        raise BackboneFileError(f"cannot read the weights in {path} ({e}): the file is damaged or was not "
                                "written to the end; re-export it by re-running pretrain with --resume") from e
    model = spec.build()
    model.load_state_dict(state)
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
