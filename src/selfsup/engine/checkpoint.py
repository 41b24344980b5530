"""Checkpoints that resume a run exactly, written atomically, loaded with weights_only=True; what a resume reads
from them (the run's state, its optimiser, its planned length), each mismatch named in one line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from selfsup.config import ConfigError
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


def last_checkpoint(out: Path) -> Path:
    return out / "checkpoints" / "last.pt"


def read_resume(out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a run in `out` resumes (None for a fresh run, whose --out must not hold one)."""
    path = last_checkpoint(out)
    if not resume:
        if path.exists():
            raise ConfigError(f"{path} exists: pass --resume to continue that run, or a new --out")
        return None
    return load_checkpoint(path)


@contextlib.contextmanager
def unfit(path: Path) -> Iterator[None]:
    """Loading a checkpoint's state into this run's model or optimiser: a mismatch is named in one line."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} does not fit this run's model ({str(e)[:300]}): resume with the "
                              "options of the original run (its config.yaml) or use a new --out") from e


def length_option(optim: dict[str, Any]) -> tuple[str, Any]:
    """Which option sets a run's length, and its value: ("minutes", m), or ("epochs", e) without minutes."""
    return ("minutes", optim.get("minutes")) if optim.get("minutes") is not None else ("epochs", optim.get("epochs"))


def resume_length(ckpt: dict[str, Any], asked_optim: dict[str, Any], start_step: int, plan: Callable[[], int],
                  out: Path) -> tuple[int, tuple[int, int] | None]:
    """(total steps, (planned, re-planned) or None) of a resumed run: the checkpoint's planned step count, or a
    new `plan()` (re-planned schedules, not bit-exact: a notice says so) if --optim.epochs/--optim.minutes now ask
    for another length; one the run has already trained is refused."""
    planned = length_option(ckpt.get("config", {}).get("optim", {}))
    asked = length_option(asked_optim)
    if asked == planned:
        return ckpt["total_steps"], None
    total = plan()
    if total <= start_step:
        raise ConfigError(f"--optim.{asked[0]} {asked[1]} plans {total} steps, but the run in {out} has "
                          f"trained {start_step} of its {ckpt['total_steps']}: ask for a longer run, "
                          f"or resume with its --optim.{planned[0]} {planned[1]}")
    return total, (ckpt["total_steps"], total)
