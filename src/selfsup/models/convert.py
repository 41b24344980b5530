"""Official ViT weights -> selfsup backbones (`selfsup convert`, `selfsup.load_backbone`).

A checkpoint is read without running arbitrary code: `torch.load(weights_only=True)` with `argparse.Namespace`
allowed (the `args` entry of DINO's, MAE's and timm's training checkpoints), or safetensors. The backbone's
tensors are picked out of the file's layout; selfsup's VisionTransformer uses the official parameter names
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

from selfsup.models.io import BackboneFileError, BackboneSpec, file_sha256, load_backbone, save_backbone
from selfsup.models.sources import DEFAULTS, SOURCES, default_norm, default_pool, default_pos_interp, official_heads
from selfsup.models.vit import POOLS, POS_INTERPS, VIT_PRESETS, swiglu_hidden

# the sizes the official repositories release
OFFICIAL_PRESETS = ("vit-tiny", "vit-small", "vit-base", "vit-large", "vit-giant")
MOCO_ARCHS = ("vit_small", "vit_base", "vit_conv_small", "vit_conv_base")  # moco-v3 vits.py __all__ ('arch')
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


def _fsdp_message(path: Path) -> str:
    """DINOv2's training checkpoints: FSDPCheckpointer saves LOCAL_STATE_DICT, each rank's shards of flattened
    parameters (dinov2/fsdp/__init__.py), which no single file rebuilds."""
    return (f"{path} is an FSDP training checkpoint (DINOv2's model_*.rank_N.pth: each rank's shards of flattened "
            "parameters, not a state_dict): convert the OUTPUT_DIR/eval/*/teacher_checkpoint.pth that DINOv2's "
            "train.py writes (run it with --eval-only to write one from the last checkpoint)")


def _unpickling_message(path: Path, error: str) -> str:
    """One line for torch's multi-line weights_only refusal, naming the pickled object when it says which."""
    if "ShardedTensor" in error or "sharded_tensor" in error:
        return _fsdp_message(path)
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


# ---- which source wrote the file -------------------------------------------------------------------------------


def layout_sources(obj: dict[str, Any], safetensors: bool = False) -> tuple[tuple[str, ...], str]:
    """The sources whose layout `obj` has, judged by its keys, and the layout in words. More than one source when
    their files look alike (e.g. {"model": encoder} is MAE's release file and MoCo v3's convert_to_deit.py
    output): the defaults differ, so the caller must choose. Only timm writes .safetensors among them."""
    sources, layout = _layout_sources(obj)
    if safetensors and "timm" in sources:
        return ("timm",), "a .safetensors state_dict (timm's hub files)"
    return sources, layout


def _layout_sources(obj: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    teacher = obj.get("teacher")
    if "student" in obj:
        return ("dino",), "main_dino.py's {'teacher', 'student', ...}"
    if isinstance(teacher, dict):
        if any(k.startswith(("dino_head.", "ibot_head.")) or k == "backbone.mask_token" for k in teacher):
            return ("dinov2",), "DINOv2's teacher_checkpoint.pth"
        return ("dino", "dinov2"), "{'teacher': backbone.*} without heads"
    model = obj.get("model")
    if isinstance(model, dict):
        if any(k.startswith(("decoder_", "mask_token")) for k in model):
            return ("mae",), "MAE's pre-training checkpoint"
        return ("mae", "moco-v3"), "{'model': encoder}, MAE's files and MoCo v3's convert_to_deit.py output"
    inner = obj.get("state_dict")
    if isinstance(inner, dict):
        arch = obj.get("arch")
        if obj.get("arch") in MOCO_ARCHS or any(k.startswith(("module.base_encoder.", "module.")) for k in inner):
            return ("moco-v3",), "MoCo v3's main_moco.py or main_lincls.py checkpoint"
        if isinstance(arch, str):
            return ("timm",), "timm's train.py checkpoint"
        return ("moco-v3", "timm"), "{'state_dict': ...} without 'module.' prefixes"
    if "mask_token" in obj or "register_tokens" in obj:  # DINOv2's models always hold mask_token
        return ("dinov2",), "a DINOv2 release state_dict"
    if "reg_token" in obj or any(k.startswith("head.") for k in obj):
        return ("timm",), "a timm state_dict"
    if any(".ls1." in k for k in obj):
        return ("dinov2", "timm"), "a state_dict with LayerScale and no mask_token"
    return ("dino", "timm"), "a backbone state_dict without a head (DINO's release files and timm's headless ones)"


def detect_source(obj: dict[str, Any], path: Path | None = None) -> str:
    """The source whose layout a checkpoint has; ConvertError naming the candidates when several fit."""
    sources, layout = layout_sources(obj, path is not None and path.suffix == ".safetensors")
    if len(sources) == 1:
        return sources[0]
    flags = " or ".join(f"--from {s}" for s in sources)
    raise ConvertError(f"{path or 'the checkpoint'} has the layout of {layout}, which {' and '.join(sources)} "
                       f"share and whose defaults differ: pass {flags} (source= in selfsup.load_backbone)")


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


def _part(obj: dict[str, Any], source: str) -> str | None:
    """The entry of the file that holds the network, or None when the file is the state_dict."""
    keys = {"mae": ("model",), "moco-v3": ("state_dict", "model"), "timm": ("state_dict", "model"),
            "dinov2": ("teacher", "model"), "dino": ("teacher",)}[source]
    return next((k for k in keys if isinstance(obj.get(k), dict)), None)


def pick_tensors(obj: dict[str, Any], source: str, path: Path, student: bool = False,
                 dropped: set[str] | None = None) -> tuple[dict[str, Any], str]:
    """The entries of the backbone's network under selfsup's names (its head still in), and which part of the
    file they came from ("file" when the file is the state_dict). Other networks' top-level names go to
    `dropped`."""
    dropped = set() if dropped is None else dropped
    if source not in SOURCES:
        raise ConvertError(f"--from {source!r} is unknown: choose one of {', '.join(SOURCES)}")
    if student and source != "dino":
        hint = " (DINOv2's teacher_checkpoint.pth holds the teacher only)" if source == "dinov2" else ""
        raise ConvertError(f"--student picks the student of a DINO training checkpoint, but {path} is converted "
                           f"--from {source}{hint}: drop --student")
    if source == "dino" and ("teacher" in obj or "student" in obj):
        part = "student" if student else "teacher"
        return _under(_under(_entry(obj, part, path, source), "module.", dropped), "backbone.", dropped), part
    if source == "mae" and _part(obj, source) is None:
        _entry(obj, "model", path, source)  # MAE always wraps: name what is missing
    part = _part(obj, source) or "file"
    entries = _under(obj[part] if part != "file" else obj, "module.", dropped)
    if source == "moco-v3":  # the query encoder; momentum_encoder and predictor are dropped
        entries = _under(entries, "base_encoder.", dropped)
    if source == "dinov2":  # teacher_checkpoint.pth: backbone.* next to dino_head.*, ibot_head.*
        entries = _under(entries, "backbone.", dropped)
    return entries, part


# Top-level names of tensors that are not the backbone: heads, MAE's decoder, MAE's and DINOv2's (iBOT's) mask
# token, which only training feeds in place of masked patches.
NOT_BACKBONE = ("head", "mask_token", "decoder_embed", "decoder_pos_embed", "decoder_blocks", "decoder_norm",
                "decoder_pred")


def backbone_state(entries: dict[str, Any], source: str, path: Path) -> tuple[State, set[str]]:
    """Drop the heads and decoders; refuse layouts selfsup's ViT cannot compute. Returns float32 tensors under
    selfsup's names and the top-level names dropped."""
    if any(k.endswith("_flat_param") for k in entries):
        raise ConvertError(_fsdp_message(path))
    if "fc_norm.weight" in entries:
        raise ConvertError(f"{path} is a ViT that pools with fc_norm (MAE fine-tuned with global_pool, its "
                           "default, or a timm model with average pooling): its feature is a LayerNorm of the mean "
                           "token before the final norm, which selfsup's ViT does not compute, so nothing is "
                           "converted: convert the pre-trained checkpoint (e.g. mae_pretrain_vit_base.pth) or one "
                           "fine-tuned with --cls_token, whose encoder is kept and head dropped")
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
    if source == "dinov2":
        state = unchunk_blocks(state)
    if source == "timm":
        state = from_timm_names(state)
    return state, dropped


def unchunk_blocks(state: State) -> State:
    """DINOv2's FSDP block chunks (BlockChunk, block_chunks > 0) name block N of chunk C blocks.C.N.*, N counting
    over all blocks (dinov2/models/vision_transformer.py): -> blocks.N.*."""
    return {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}


def from_timm_names(state: State) -> State:
    """timm's names for DINOv2's additions -> DINOv2's, as timm's `_convert_dinov2` (vision_transformer.py) maps
    them the other way: reg_token -> register_tokens; the packed SwiGLU mlp.fc1/fc2 (width 2 * hidden) ->
    mlp.w12/w3; and a pos_embed without the class position (no_embed_class: DINOv2-with-registers and DeiT-3
    models, whose [CLS] takes no position embedding) gets a zero one, which adds nothing to [CLS]."""
    state = dict(state)
    if "reg_token" in state:
        state["register_tokens"] = state.pop("reg_token")
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3 and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
        state["pos_embed"] = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.shape[0] == 2 * swiglu_hidden(4 * fc1.shape[1]) != 4 * fc1.shape[1]:
        state = {re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", k)): v
                 for k, v in state.items()}
    return state


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
        raise ConvertError(f"{path} does not fit {spec.name}: {_first_line(str(e).split(':', 1)[-1])}") from None
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
           "infer_geometry", "layout_sources", "load_pretrained", "read_checkpoint", "resolve_spec", "suggest_flags",
           "write_run"]
