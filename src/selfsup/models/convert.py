"""Official ViT weights -> selfsup backbones (`selfsup convert`, `selfsup.load_backbone`).

A checkpoint is read without running arbitrary code: `torch.load(weights_only=True)` with `argparse.Namespace`
allowed (the `args` entry of DINO's, MAE's and timm's training checkpoints), or safetensors. The backbone's
tensors are picked out of the file's layout; selfsup's VisionTransformer uses the official parameter names
(cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm), LayerNorm
eps 1e-6 and qkv biases, as DINO's, MAE's, MoCo v3's and timm's ViTs do, so the tensors load as they are.

Layouts (facebookresearch/dino main_dino.py and hubconf.py, mae main_pretrain.py, moco-v3 main_moco.py, timm):
  dino     release file: the backbone's state_dict. Training checkpoint: {"teacher": backbone.* + head.*,
           "student": module.backbone.* + module.head.*, "args": Namespace, "optimizer", "epoch", "dino_loss"}
  mae      {"model": the encoder's state_dict}; pre-training checkpoints add mask_token and decoder_*
  moco-v3  {"state_dict": module.base_encoder.*, module.momentum_encoder.*, module.predictor.*, ...}
  timm     the model's state_dict (head.* is the classifier), or {"state_dict": ...}; also .safetensors
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from selfsup.eval.feature_cache import file_digest
from selfsup.models.io import BackboneFileError, BackboneSpec, load_backbone, save_backbone
from selfsup.models.vit import POS_INTERPS, VIT_PRESETS

SOURCES = ("dino", "mae", "moco-v3", "timm")
OFFICIAL_PRESETS = ("vit-tiny", "vit-small", "vit-base")  # the sizes the official repositories release
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
BACKBONE_FILE = "backbone.safetensors"
State = dict[str, torch.Tensor]


class ConvertError(BackboneFileError):
    """A checkpoint that cannot be read or does not fit the requested ViT; the message names the file and fix."""


@dataclass(frozen=True)
class Geometry:
    """What a ViT state_dict's tensors say about its architecture."""

    width: int  # patch_embed.proj.weight: (width, in_chans, patch, patch)
    depth: int  # number of blocks.N
    patch_size: int
    in_chans: int
    grid: int  # pos_embed: (1, 1 + grid * grid, width)

    @property
    def img_size(self) -> int:
        return self.grid * self.patch_size


@dataclass
class Converted:
    """A converted backbone, its spec, and where in the file its tensors came from."""

    model: nn.Module
    spec: BackboneSpec
    source: str
    part: str  # the file's entry they were under: "teacher", "student", "model", "state_dict", or "file"
    dropped: list[str] = field(default_factory=list)  # top-level names of the tensors left out (head, decoder_...)


# ---- reading ---------------------------------------------------------------------------------------------------


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file -> its top-level dict, loading only tensors, plain containers and argparse.Namespace."""
    if not path.is_file():
        raise ConvertError(f"no checkpoint file at {path}: pass the path of the downloaded .pth/.pth.tar/.safetensors")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:
            raise ConvertError(f"cannot read {path} as safetensors ({e}): download the file again") from e
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConvertError(_unpickling_message(path, str(e))) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ConvertError(f"cannot read {path} as a PyTorch checkpoint ({_first_line(str(e))}): download the file "
                           "again or check that it is a .pth/.pth.tar file") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path} holds a {type(obj).__name__}, not a dict of tensors: save the model's "
                           "state_dict() (torch.save(model.state_dict(), FILE)) and convert that")
    return obj


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def _unpickling_message(path: Path, error: str) -> str:
    """One line for torch's multi-line weights_only refusal, naming the pickled object when it says which."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", error)
    if found is None:
        detail = re.search(r"WeightsUnpickler error: ([^\n]*)", error)
        return (f"cannot read {path} as a PyTorch checkpoint ({detail.group(1) if detail else 'not a pickle'}): "
                "download the file again or check that it is a .pth/.pth.tar file")
    return (f"{path} holds a pickled {found.group(1)} object, and selfsup loads only tensors, plain containers and "
            "argparse.Namespace (never code a file could run): if you trust the file, re-save its weights alone, "
            "e.g. torch.save(torch.load(FILE, weights_only=False)['model'], 'weights.pth'), and convert that")


def is_selfsup_file(path: Path) -> bool:
    """Whether `path` is a backbone.safetensors written by selfsup (it carries the spec as metadata)."""
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return "selfsup_backbone" in (f.metadata() or {})
    except Exception:
        return False


def detect_source(obj: dict[str, Any]) -> str:
    """The likeliest layout of a checkpoint. A bare state_dict is DINO's when it has no classifier head."""
    if "teacher" in obj or "student" in obj:
        return "dino"
    if isinstance(obj.get("model"), dict):
        return "mae"
    inner = obj.get("state_dict")
    if isinstance(inner, dict):
        return "moco-v3" if any("base_encoder." in k for k in inner) else "timm"
    return "timm" if any(k.startswith("head.") for k in obj) else "dino"


# ---- picking the backbone's tensors ----------------------------------------------------------------------------


def _under(state: dict[str, Any], prefix: str, dropped: set[str]) -> dict[str, Any]:
    """The entries under `prefix`, renamed without it (all of them when none is under it); the top-level names of
    the others go to `dropped`."""
    if not any(k.startswith(prefix) for k in state):
        return dict(state)
    dropped.update(k.split(".")[0] for k in state if not k.startswith(prefix))
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _entry(obj: dict[str, Any], key: str, path: Path, source: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise ConvertError(f"{path} has no {key!r} state_dict, which --from {source} expects (its entries: "
                           f"{', '.join(map(str, list(obj)[:6]))}): check --from")
    return value


def pick_tensors(obj: dict[str, Any], source: str, path: Path, student: bool = False,
                 dropped: set[str] | None = None) -> tuple[dict[str, Any], str]:
    """The entries of the backbone's network under selfsup's names (its head still in), and which part of the
    file they came from ("file" when the file is the state_dict). Other networks' top-level names go to
    `dropped`."""
    dropped = set() if dropped is None else dropped
    if student and source != "dino":
        raise ConvertError(f"--student picks the student of a DINO training checkpoint, but {path} is converted "
                           f"--from {source}: drop --student")
    if source == "dino" and ("teacher" in obj or "student" in obj):
        part = "student" if student else "teacher"
        return _under(_under(_entry(obj, part, path, source), "module.", dropped), "backbone.", dropped), part
    key = {"mae": "model", "moco-v3": "state_dict"}.get(source)
    if source == "timm":
        key = next((k for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None)
    if source not in SOURCES:
        raise ConvertError(f"--from {source!r} is unknown: choose one of {', '.join(SOURCES)}")
    part = key if key is not None and key in obj else "file"
    entries = _under(_entry(obj, key, path, source) if part != "file" else obj, "module.", dropped)
    if source == "moco-v3":  # the query encoder; momentum_encoder and predictor are dropped
        entries = _under(entries, "base_encoder.", dropped)
    return entries, part


# Top-level names of tensors that are not the backbone: heads, MAE's decoder and mask token.
NOT_BACKBONE = ("head", "mask_token", "decoder_embed", "decoder_pos_embed", "decoder_blocks", "decoder_norm",
                "decoder_pred")


def backbone_state(entries: dict[str, Any], source: str, path: Path) -> tuple[State, set[str]]:
    """Drop the heads and decoders; refuse layouts selfsup's ViT cannot compute. Returns float32 tensors and the
    top-level names dropped."""
    if "fc_norm.weight" in entries:
        raise ConvertError(f"{path} is a ViT that pools with fc_norm (a fine-tuned MAE model or a timm model with "
                           "global average pooling), which selfsup's ViT does not compute: convert the "
                           "pre-trained checkpoint (e.g. mae_pretrain_vit_base.pth) instead")
    state, dropped = {}, set()
    for key, value in entries.items():
        top = key.split(".")[0]
        if top in NOT_BACKBONE:
            dropped.add(top)
        elif not isinstance(value, torch.Tensor):
            raise ConvertError(f"{path}: entry {key!r} under --from {source} is a {type(value).__name__}, not a "
                               "tensor: check --from")
        else:
            state[key] = value.float() if value.is_floating_point() else value
    return state, dropped


# ---- architecture ----------------------------------------------------------------------------------------------


def infer_geometry(state: State, source: str, path: Path) -> Geometry:
    """Width, depth, patch size, channels and position grid read off the tensors' shapes."""
    proj, pos = state.get("patch_embed.proj.weight"), state.get("pos_embed")
    if proj is None or proj.ndim != 4 or pos is None or pos.ndim != 3:
        keys = ", ".join(list(state)[:5]) or "none"
        raise ConvertError(f"{path} has no ViT patch embedding and position embeddings under --from {source} "
                           f"(its backbone keys start: {keys}): check --from (dino, mae, moco-v3 or timm)")
    n = pos.shape[1] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise ConvertError(f"{path}: pos_embed has {pos.shape[1]} positions, not a [CLS] position plus a square grid "
                           "(a model without a class token or with register tokens), which selfsup's ViT does not "
                           "compute")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    width = proj.shape[0]
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.shape[0] != 4 * width:
        raise ConvertError(f"{path}: its MLP is {fc1.shape[0]} wide for width {width}, and selfsup's ViTs have an "
                           "MLP ratio of 4: this architecture cannot be converted")
    return Geometry(width=width, depth=depth, patch_size=proj.shape[-1], in_chans=proj.shape[1], grid=grid)


def official_heads(source: str, width: int) -> int | None:
    """Attention heads of the official ViT of this width when they differ from selfsup's preset of that width
    (heads are not stored in the weights): MoCo v3's ViT-S has 12, ViT-L and ViT-H (MAE, MoCo v3) 16."""
    if source == "moco-v3" and width == 384:
        return 12
    return {1024: 16, 1280: 16}.get(width)


def matching_preset(width: int, depth: int) -> str | None:
    return next((n for n in OFFICIAL_PRESETS if (VIT_PRESETS[n].embed_dim, VIT_PRESETS[n].depth) == (width, depth)),
                None)


def suggest_flags(geom: Geometry, source: str) -> str:
    """The convert flags that fit a file's tensors, e.g. '--backbone vit-small --patch-size 8'."""
    preset = matching_preset(geom.width, geom.depth)
    if preset is not None:
        return f"--backbone {preset} --patch-size {geom.patch_size}"
    heads = official_heads(source, geom.width) or max(1, geom.width // 64)
    return (f"--backbone vit-base --width {geom.width} --depth {geom.depth} --num-heads {heads} --patch-size "
            f"{geom.patch_size} (heads are not stored in the weights: take them from the model's code)")


def resolve_spec(geom: Geometry, source: str, path: Path, backbone: str | None = None,
                 patch_size: int | None = None, width: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, pos_interp: str | None = None) -> BackboneSpec:
    """The spec of the converted ViT: the options given, checked against the tensors (None: read off them)."""
    if patch_size is not None and patch_size != geom.patch_size:
        raise ConvertError(f"--patch-size {patch_size} does not fit {path}: its patch embedding cuts "
                           f"{geom.patch_size}x{geom.patch_size}-px patches; pass --patch-size {geom.patch_size}")
    name = backbone or matching_preset(geom.width, geom.depth)
    if name is None:
        raise ConvertError(f"{path} holds a ViT of width {geom.width} and depth {geom.depth}, which is no preset's: "
                           f"pass {suggest_flags(geom, source)}")
    if name not in VIT_PRESETS:
        raise ConvertError(f"--backbone {name} is not a ViT: pass {suggest_flags(geom, source)}")
    preset = VIT_PRESETS[name]
    asked = (width or preset.embed_dim, depth or preset.depth)
    if asked != (geom.width, geom.depth):
        given = f"--backbone {name}" + (f" --width {width}" if width else "") + (f" --depth {depth}" if depth else "")
        raise ConvertError(f"{given} is a ViT of width {asked[0]} and depth {asked[1]}, but {path} holds width "
                           f"{geom.width} and depth {geom.depth}: pass {suggest_flags(geom, source)}")
    heads = num_heads or official_heads(source, geom.width)
    head_dim = preset.embed_dim // preset.num_heads
    if heads is None and geom.width % head_dim:
        raise ConvertError(f"width {geom.width} is not a multiple of {name}'s {head_dim} channels per head: pass "
                           "--num-heads (heads are not stored in the weights: take them from the model's code)")
    if heads is not None and geom.width % heads:
        raise ConvertError(f"--num-heads {heads} does not divide the width {geom.width} of {path}: pass a divisor")
    if pos_interp is not None and pos_interp not in POS_INTERPS:
        raise ConvertError(f"--pos-interp {pos_interp!r} is unknown: choose one of {', '.join(POS_INTERPS)}")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if geom.in_chans == 3 else ([0.449] * geom.in_chans,
                                                                           [0.226] * geom.in_chans)
    return BackboneSpec(
        name=name, img_size=geom.img_size, in_chans=geom.in_chans, patch_size=geom.patch_size, mean=mean, std=std,
        width=None if geom.width == preset.embed_dim else geom.width,
        depth=None if geom.depth == preset.depth else geom.depth,
        num_heads=None if heads in (None, geom.width // head_dim) else heads,
        pos_interp=pos_interp or ("dino" if source == "dino" else "size"))


def load_into(spec: BackboneSpec, state: State, source: str, path: Path) -> nn.Module:
    """spec.build() with `state` loaded strictly; an error names the tensors that do not fit."""
    model = spec.build()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch
        raise ConvertError(f"{path} does not fit {spec.name}: {_first_line(str(e).split(':', 1)[-1])}") from None
    if unexpected:
        raise ConvertError(f"{path} has tensors selfsup's ViT has no place for ({', '.join(unexpected[:4])}"
                           f"{', ...' if len(unexpected) > 4 else ''}{_architecture_hint(unexpected)}): this "
                           "architecture cannot be converted, or check --from")
    if missing:
        raise ConvertError(f"{path} lacks {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''} under --from "
                           f"{source}: check --from (dino, mae, moco-v3 or timm)")
    return model.eval()


def _architecture_hint(keys: list[str]) -> str:
    for marker, what in ((".ls1.", "layer scale"), ("reg_token", "register tokens"), ("norm_pre", "a pre-norm"),
                         ("q_norm", "query/key norms")):
        if any(marker in k for k in keys):
            return f": {what}"
    return ""


# ---- the whole conversion --------------------------------------------------------------------------------------


def convert_checkpoint(path: str | Path, source: str, backbone: str | None = None, patch_size: int | None = None,
                       width: int | None = None, depth: int | None = None, num_heads: int | None = None,
                       pos_interp: str | None = None, student: bool = False) -> Converted:
    """An official checkpoint file -> the selfsup ViT holding its backbone (eval mode) and its spec.

    `backbone` (vit-tiny, vit-small, vit-base), `patch_size`, `width` and `depth` are checked against the tensors
    and read off them when None; `num_heads` defaults to the official model's; `pos_interp` to "dino" for DINO
    weights (its scale-factor interpolation) and "size" for the others; `student` takes a DINO training
    checkpoint's student instead of its teacher."""
    path = Path(path)
    if source not in SOURCES:
        raise ConvertError(f"--from {source!r} is unknown: choose one of {', '.join(SOURCES)}")
    other: set[str] = set()
    entries, part = pick_tensors(read_checkpoint(path), source, path, student, other)
    state, dropped = backbone_state(entries, source, path)
    geom = infer_geometry(state, source, path)
    spec = resolve_spec(geom, source, path, backbone, patch_size, width, depth, num_heads, pos_interp)
    return Converted(load_into(spec, state, source, path), spec, source, part, sorted(dropped | other))


def load_pretrained(path: str | Path, source: str | None = None, **options: Any) -> tuple[nn.Module, BackboneSpec]:
    """A run directory, a selfsup backbone.safetensors or an official checkpoint (`source` one of SOURCES; None:
    guessed from the layout) -> (backbone in eval mode, spec). `options` go to `convert_checkpoint`."""
    path = Path(path)
    if path.is_dir():
        path = path / BACKBONE_FILE
    if is_selfsup_file(path) or (path.name == BACKBONE_FILE and not path.exists()):
        model, spec = load_backbone(path)
        return model.eval(), spec
    if source is None:
        source = "timm" if path.suffix == ".safetensors" else detect_source(read_checkpoint(path))
    converted = convert_checkpoint(path, source, **options)
    return converted.model, converted.spec


def write_run(converted: Converted, checkpoint: Path, out: Path, data: str | None = None) -> Path:
    """Write `out/backbone.safetensors` (weights + spec) and `out/config.yaml` (method, the default evaluation
    data when given, the architecture, and the file converted with its sha256); returns the backbone path."""
    target = out / BACKBONE_FILE
    if target.exists():
        raise ConvertError(f"--out {out} already holds a backbone: choose a new directory or delete {target}")
    save_backbone(converted.model, converted.spec, target)
    spec = converted.spec
    config: dict[str, Any] = {"method": converted.source}
    if data:
        config["data"] = {"name": data}
    config["backbone"] = {"name": spec.name, "patch_size": spec.patch_size, "width": spec.width, "depth": spec.depth,
                          "num_heads": spec.num_heads, "pos_interp": spec.pos_interp}
    config["converted_from"] = {"file": str(checkpoint.resolve()), "from": converted.source, "part": converted.part,
                                "sha256": file_digest(checkpoint)}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


__all__ = ["SOURCES", "ConvertError", "Converted", "Geometry", "convert_checkpoint", "detect_source",
           "infer_geometry", "load_pretrained", "read_checkpoint", "resolve_spec", "suggest_flags", "write_run"]
