"""Which official code wrote a checkpoint (its layout: which entries, which key prefixes), and the backbone's
tensors picked out of it under the official parameter names (see `convert.py` for the layouts of each source).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from selfsup.models.checkpoint_file import ConvertError, fsdp_message
from selfsup.models.sources import SOURCES
from selfsup.models.vit_layers import swiglu_hidden

MOCO_ARCHS = ("vit_small", "vit_base", "vit_conv_small", "vit_conv_base")  # moco-v3 vits.py __all__ ('arch')
State = dict[str, torch.Tensor]


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
        raise ConvertError(fsdp_message(path))
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
