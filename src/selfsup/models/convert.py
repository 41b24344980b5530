"""Official ViT weights -> selfsup backbones (`selfsup convert`, `selfsup.load_backbone`).

A checkpoint is read without running arbitrary code (`checkpoint_file.py`: `torch.load(weights_only=True)` with
`argparse.Namespace` allowed, the `args` entry of DINO's, MAE's and timm's training checkpoints, or safetensors).
The backbone's tensors are picked out of the file's layout (`layouts.py`); here the architecture is read off them
and the backbone built and loaded. selfsup's VisionTransformer uses the official parameter names
(cls_token, pos_embed, register_tokens, patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,
mlp.fc1,mlp.fc2 or mlp.w12,mlp.w3,ls2.gamma}, norm), LayerNorm eps 1e-6 and qkv biases, as DINO's, DINOv2's, MAE's,
MoCo v3's and timm's ViTs do, so the tensors load as they are. The architecture (width, depth, patch size,
registers, LayerScale, SwiGLU) is read off the tensors; what they do not store (heads, input mean/std, resizing,
the feature) comes from the source's defaults (models/sources.py) or the flags.

Layouts (facebookresearch/dino main_dino.py and hubconf.py; dinov2 hub/backbones.py, train/train.py do_test,
fsdp/__init__.py; mae main_pretrain.py, main_finetune.py, main_linprobe.py; moco-v3 main_moco.py,
convert_to_deit.py, main_lincls.py; timm):
  dino     release file: the backbone's state_dict. Training checkpoint: {"teacher": backbone.* + head.*,
           "student": module.backbone.* + module.head.*, "args": Namespace, "optimizer", "epoch", "dino_loss"}
  dinov2   release file dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth: the backbone's state_dict, with iBOT's
           mask_token. eval/N/teacher_checkpoint.pth: {"teacher": backbone.* + dino_head.* + ibot_head.*}, blocks
           as blocks.C.N.* when trained with block_chunks C > 0 (BlockChunk). Its model_*.rank_R.pth training
           checkpoints hold FSDP shards of flattened parameters (LOCAL_STATE_DICT), which are refused.
  mae      {"model": the encoder's state_dict}; pre-training checkpoints add mask_token and decoder_*; fine-tuned
           and linear-probe checkpoints add the classifier head (and fc_norm in place of norm with global_pool)
  moco-v3  main_moco.py {"state_dict": module.base_encoder.*, module.momentum_encoder.*, module.predictor.*, ...};
           convert_to_deit.py {"model": the base encoder without its head}; main_lincls.py {"state_dict":
           module.* with the linear head}
  timm     the model's state_dict (head.* is the classifier), or {"state_dict": ...}; also .safetensors. Its
           DINOv2 and DeiT-3 models keep no class position (no_embed_class) and name the registers reg_token and
           the packed SwiGLU mlp.fc1/fc2: these are renamed to DINOv2's layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from selfsup.models.checkpoint_file import ConvertError, first_line, is_selfsup_file, read_checkpoint
from selfsup.models.io import BackboneSpec, file_sha256, load_backbone, save_backbone
from selfsup.models.layouts import State, backbone_state, detect_source, pick_tensors
from selfsup.models.sources import DEFAULTS, SOURCES, default_norm, default_pool, default_pos_interp, official_heads
from selfsup.models.vit import POOLS, POS_INTERPS, VIT_PRESETS
from selfsup.models.vit_layers import swiglu_hidden

# the sizes the official repositories release
OFFICIAL_PRESETS = ("vit-tiny", "vit-small", "vit-base", "vit-large", "vit-giant")
BACKBONE_FILE = "backbone.safetensors"


@dataclass(frozen=True)
class Geometry:
    """What a ViT state_dict's tensors say about its architecture."""

    width: int  # patch_embed.proj.weight: (width, in_chans, patch, patch)
    depth: int  # number of blocks.N
    patch_size: int
    in_chans: int
    grid: int  # pos_embed: (1, 1 + grid * grid, width)
    registers: int = 0  # register_tokens: (1, registers, width)
    layerscale: bool = False  # blocks.N.ls1.gamma, ls2.gamma
    ffn: str = "mlp"  # blocks.N.mlp.fc1/fc2 ("mlp") or blocks.N.mlp.w12/w3 ("swiglu")

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
    defaults: list[str] = field(default_factory=list)  # the flags not given, whose source defaults were taken


# ---- architecture ----------------------------------------------------------------------------------------------


def infer_geometry(state: State, source: str, path: Path) -> Geometry:
    """Width, depth, patch size, channels, position grid, registers, LayerScale and feed-forward read off the
    tensors' shapes."""
    proj, pos = state.get("patch_embed.proj.weight"), state.get("pos_embed")
    if proj is None or proj.ndim != 4 or pos is None or pos.ndim != 3:
        keys = ", ".join(list(state)[:5]) or "none"
        raise ConvertError(f"{path} has no ViT patch embedding and position embeddings under --from {source} "
                           f"(its backbone keys start: {keys}): check --from ({', '.join(SOURCES)})")
    n = pos.shape[1] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise ConvertError(f"{path}: pos_embed has {pos.shape[1]} positions, not a [CLS] position plus a square grid "
                           "(a model without a class token, or position embeddings on its register tokens), "
                           "which selfsup's ViT does not compute")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    width = proj.shape[0]
    registers = state["register_tokens"].shape[1] if "register_tokens" in state else 0
    ffn = "swiglu" if "blocks.0.mlp.w12.weight" in state else "mlp"
    hidden = state.get("blocks.0.mlp.w12.weight" if ffn == "swiglu" else "blocks.0.mlp.fc1.weight")
    expected = 2 * swiglu_hidden(4 * width) if ffn == "swiglu" else 4 * width
    if hidden is not None and hidden.shape[0] != expected:
        raise ConvertError(f"{path}: its {'SwiGLU' if ffn == 'swiglu' else 'MLP'} is {hidden.shape[0]} wide for width "
                           f"{width}, where selfsup's ViTs have an MLP ratio of 4 ({expected}): this architecture "
                           "cannot be converted")
    return Geometry(width=width, depth=depth, patch_size=proj.shape[-1], in_chans=proj.shape[1], grid=grid,
                    registers=registers, layerscale="blocks.0.ls1.gamma" in state, ffn=ffn)


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


def _channels(values: list[float] | None, in_chans: int, flag: str) -> None:
    if values is not None and (len(values) != in_chans or (flag == "--std" and min(values) <= 0)):
        raise ConvertError(f"{flag} {' '.join(map(str, values))} does not fit the file's {in_chans}-channel input: "
                           f"pass {in_chans} values" + (", each above 0" if flag == "--std" else ""))


def resolve_spec(geom: Geometry, source: str, path: Path, backbone: str | None = None,
                 patch_size: int | None = None, width: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, pos_interp: str | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, pool: str | None = None) -> BackboneSpec:
    """The spec of the converted ViT: the options given, checked against the tensors (None: read off them, or the
    source's default from models/sources.py)."""
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
    if pool is not None and pool not in POOLS:
        raise ConvertError(f"--pool {pool!r} is unknown: choose one of {', '.join(POOLS)}")
    _channels(mean, geom.in_chans, "--mean")
    _channels(std, geom.in_chans, "--std")
    source_mean, source_std = default_norm(source, geom.in_chans)
    return BackboneSpec(
        name=name, img_size=geom.img_size, in_chans=geom.in_chans, patch_size=geom.patch_size,
        mean=list(mean or source_mean), std=list(std or source_std), pool=pool or default_pool(source, geom.width),
        width=None if geom.width == preset.embed_dim else geom.width,
        depth=None if geom.depth == preset.depth else geom.depth,
        num_heads=None if heads in (None, geom.width // head_dim) else heads,
        pos_interp=pos_interp or default_pos_interp(source, geom.registers),
        layerscale=1.0 if geom.layerscale else None, registers=geom.registers, ffn=geom.ffn)


def load_into(spec: BackboneSpec, state: State, source: str, path: Path) -> nn.Module:
    """spec.build() with `state` loaded strictly; an error names the tensors that do not fit."""
    model = spec.build()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch
        raise ConvertError(f"{path} does not fit {spec.name}: {first_line(str(e).split(':', 1)[-1])}") from None
    if unexpected:
        raise ConvertError(f"{path} has tensors selfsup's ViT has no place for ({', '.join(unexpected[:4])}"
                           f"{', ...' if len(unexpected) > 4 else ''}{_architecture_hint(unexpected)}): this "
                           "architecture cannot be converted, or check --from")
    if missing:
        raise ConvertError(f"{path} lacks {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''} under --from "
                           f"{source}: check --from ({', '.join(SOURCES)})")
    return model.eval()


def _architecture_hint(keys: list[str]) -> str:
    for marker, what in ((".ls1.", "layer scale on some blocks only"), ("norm_pre", "a pre-norm"),
                         ("q_norm", "query/key norms"), ("attn.q_bias", "separate q/v biases (BEiT)")):
        if any(marker in k for k in keys):
            return f": {what}"
    return ""


# ---- the whole conversion --------------------------------------------------------------------------------------


def convert_checkpoint(path: str | Path, source: str, backbone: str | None = None, patch_size: int | None = None,
                       width: int | None = None, depth: int | None = None, num_heads: int | None = None,
                       pos_interp: str | None = None, student: bool = False, mean: list[float] | None = None,
                       std: list[float] | None = None, pool: str | None = None) -> Converted:
    """An official checkpoint file -> the selfsup ViT holding its backbone (eval mode) and its spec.

    `backbone` (vit-tiny, vit-small, vit-base, vit-large, vit-giant), `patch_size`, `width` and `depth` are checked
    against the tensors and read off them when None, as are registers, LayerScale and the feed-forward;
    `num_heads`, `pos_interp`, `mean`, `std` and `pool` default to the source's (models/sources.py: DINO's
    scale-factor resizing for DINO and DINOv2's original models, antialiased for DINOv2's register models and
    timm, plain for MAE and MoCo v3); `student` takes a DINO training checkpoint's student instead of its
    teacher."""
    path = Path(path)
    if source not in SOURCES:
        raise ConvertError(f"--from {source!r} is unknown: choose one of {', '.join(SOURCES)}")
    other: set[str] = set()
    entries, part = pick_tensors(read_checkpoint(path), source, path, student, other)
    state, dropped = backbone_state(entries, source, path)
    geom = infer_geometry(state, source, path)
    spec = resolve_spec(geom, source, path, backbone, patch_size, width, depth, num_heads, pos_interp, mean, std,
                        pool)
    given = {"--num-heads": num_heads, "--mean": mean, "--std": std, "--pos-interp": pos_interp, "--pool": pool}
    return Converted(load_into(spec, state, source, path), spec, source, part, sorted(dropped | other),
                     [k for k, v in given.items() if v is None])


def load_pretrained(path: str | Path, source: str | None = None, **options: Any) -> tuple[nn.Module, BackboneSpec]:
    """A run directory, a selfsup backbone.safetensors or an official checkpoint (`source` one of SOURCES; None:
    guessed from the layout, refused when several sources share it) -> (backbone in eval mode, spec). `options` go
    to `convert_checkpoint`."""
    path = Path(path)
    if path.is_dir():
        path = path / BACKBONE_FILE
    if is_selfsup_file(path) or (path.name == BACKBONE_FILE and not path.exists()):
        model, spec = load_backbone(path)
        return model.eval(), spec
    if source is None:
        source = detect_source(read_checkpoint(path), path)
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
                          "num_heads": spec.num_heads, "pos_interp": spec.pos_interp, "pool": spec.pool,
                          "registers": spec.registers, "layerscale": spec.layerscale, "ffn": spec.ffn,
                          "mean": spec.mean, "std": spec.std}
    config["converted_from"] = {"file": str(checkpoint.resolve()), "from": converted.source, "part": converted.part,
                                "sha256": file_sha256(checkpoint)}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


__all__ = ["DEFAULTS", "SOURCES", "ConvertError", "Converted", "Geometry", "convert_checkpoint", "detect_source",
           "infer_geometry", "load_pretrained", "read_checkpoint", "resolve_spec", "suggest_flags",
           "write_run"]
