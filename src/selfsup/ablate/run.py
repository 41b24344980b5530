"""Running a recipe's variants: each pre-trains through the engine (k-NN at the end) in a process of its own,
so that its peak memory is its own, then gets the linear probe of `selfsup eval linear`. A variant's result
file, <out>/<recipe>/<variant>.json, is written last: a variant that has one is not run again, and one
stopped half-way resumes from its checkpoint."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.ablate.recipe import AblationRecipe, Variant
from selfsup.config import ConfigError, build_config
from selfsup.engine.pretrain import pretrain
from selfsup.errors import SelfsupError
from selfsup.eval.context import build_context
from selfsup.eval.linear import LinearOptions
from selfsup.eval.protocols import run_protocol
from selfsup.machine import machine_words


class AblationError(SelfsupError, RuntimeError):
    """A variant's run failed."""


def run_recipe(recipe: AblationRecipe, out: Path, minutes: float | None = None, progress: bool = True
               ) -> list[dict[str, Any]]:
    """The result of every variant of `recipe` (see `run_variant`), in the recipe's order."""
    return [run_variant(recipe, v, out, minutes, progress) for v in recipe.variants]


def result_path(recipe: AblationRecipe, variant: Variant, out: Path) -> Path:
    return out / recipe.name / f"{variant.name}.json"


def run_variant(recipe: AblationRecipe, variant: Variant, out: Path, minutes: float | None = None,
                progress: bool = True) -> dict[str, Any]:
    """The variant's result: read from its file when there is one (made with the same config), else run."""
    cfg = recipe.config(variant, out, minutes).to_dict()
    path = result_path(recipe, variant, out)
    if not path.exists():
        print(f"ablate: {recipe.name} / {variant.name}", file=sys.stderr)
        _spawn(cfg, recipe.linear, path, progress)
    result = json.loads(path.read_text())
    if _settings(result["config"]) != _settings(cfg):
        raise ConfigError(f"{path} holds variant {variant.name} run with another config than {recipe.path} now "
                          "gives (recipe or --minutes changed): delete the file to run it again, or pass a new --out")
    return result


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config dict without its run folder (the same run may be reached by another spelling of --out)."""
    return {**cfg, "run": {**cfg["run"], "out": None}}


def _spawn(cfg: dict[str, Any], linear: dict[str, Any], path: Path, progress: bool) -> None:
    """Run `train_variant` in a fresh process (its own peak memory) and wait for it."""
    child = multiprocessing.get_context("spawn").Process(target=train_variant, args=(cfg, linear, str(path),
                                                                                     progress))
    child.start()
    child.join()
    if child.exitcode != 0 or not path.exists():
        raise AblationError(f"variant {path.stem} failed (exit code {child.exitcode}; its output is above); its "
                            f"run is in {cfg['run']['out']}: run the same command again to resume it")


def train_variant(cfg_dict: dict[str, Any], linear: dict[str, Any], path: str, progress: bool = True) -> None:
    """In the variant's process: pre-train (resuming a stopped run), evaluate, write the result file."""
    from selfsup.errors import USER_ERRORS

    try:
        cfg = build_config(cfg_dict)
        t0 = time.time()
        run = pretrain(cfg, resume=(Path(cfg.run.out) / "checkpoints" / "last.pt").exists(), progress=progress)
        memory = peak_memory()
        linear_top1 = linear_probe(run.out, linear, cfg.run.seed)
    except USER_ERRORS as e:
        print(f"selfsup ablate: error: {e}", file=sys.stderr)
        sys.exit(2)
    curve = [json.loads(line) for line in (run.out / "metrics.jsonl").read_text().splitlines()]
    result = {"config": cfg_dict, "knn_top1": run.knn["top1"] if run.knn else None, "linear_top1": linear_top1,
              "train_minutes": round(run.minutes, 3), "wall_minutes": round((time.time() - t0) / 60, 3),
              "steps": run.steps, "images_per_s": round(run.images_per_s, 1), **memory,
              "machine": _machine(), "curve": curve}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def peak_memory() -> dict[str, Any]:
    """This process's peak memory so far in MiB: the GPU's allocated memory where CUDA ran, else the
    resident set (ru_maxrss, which counts the interpreter and the data too)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1), "memory": "GPU allocated"}
    return {"peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "memory": "CPU max RSS"}


def linear_probe(run_dir: Path, options: dict[str, Any], seed: int) -> float:
    """Top-1 of `selfsup eval linear` on the run's backbone (its record goes to run_dir/eval/linear.json)."""
    ctx = build_context(run_dir, options=LinearOptions(**options), seed=seed)
    return run_protocol("linear", ctx, echo=False)["numbers"]["top1"]


def _machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return machine_words() + (f", {gpu}" if gpu else "")
