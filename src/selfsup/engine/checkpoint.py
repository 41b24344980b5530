"""Checkpoints that resume a run exactly, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from selfsup.errors import SelfsupError


class CheckpointError(SelfsupError, RuntimeError):
    """A checkpoint that cannot be used for this run; the message names the file and the fix."""


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train first with `selfsup pretrain --out "
                              f"{path.parent.parent}` or drop --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path} ({e}); delete it to start afresh") from e


def check_compatible(ckpt: dict[str, Any], method: str, backbone: str, path: Path) -> None:
    """Refuse to resume a run of another method or backbone."""
    got = (ckpt.get("method"), ckpt.get("backbone"))
    if got != (method, backbone):
        raise CheckpointError(
            f"checkpoint {path} was written by method {got[0]!r} with backbone {got[1]!r}, but this run "
            f"asks for method {method!r} with backbone {backbone!r}: pass the same --method/--backbone, "
            "or a new --out to start a separate run"
        )
