"""Reading a checkpoint file from elsewhere without running its code: `torch.load(weights_only=True)` with
`argparse.Namespace` allowed (the `args` entry of DINO's, MAE's and timm's training checkpoints), or safetensors;
every refusal is one line naming the file and the fix (a pickled object, an FSDP shard, a truncated file).
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from selfsup.models.io import BackboneFileError


class ConvertError(BackboneFileError):
    """A checkpoint that cannot be read or does not fit the requested ViT; the message names the file and fix."""


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
        raise ConvertError(f"cannot read {path} as a PyTorch checkpoint ({first_line(str(e))}): download the file "
                           "again or check that it is a .pth/.pth.tar file") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path} holds a {type(obj).__name__}, not a dict of tensors: save the model's "
                           "state_dict() (torch.save(model.state_dict(), FILE)) and convert that")
    return obj


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def fsdp_message(path: Path) -> str:
    """DINOv2's training checkpoints: FSDPCheckpointer saves LOCAL_STATE_DICT, each rank's shards of flattened
    parameters (dinov2/fsdp/__init__.py), which no single file rebuilds."""
    return (f"{path} is an FSDP training checkpoint (DINOv2's model_*.rank_N.pth: each rank's shards of flattened "
            "parameters, not a state_dict): convert the OUTPUT_DIR/eval/*/teacher_checkpoint.pth that DINOv2's "
            "train.py writes (run it with --eval-only to write one from the last checkpoint)")


def _unpickling_message(path: Path, error: str) -> str:
    """One line for torch's multi-line weights_only refusal, naming the pickled object when it says which."""
    if "ShardedTensor" in error or "sharded_tensor" in error:
        return fsdp_message(path)
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


__all__ = ["ConvertError", "first_line", "fsdp_message", "is_selfsup_file", "read_checkpoint"]
