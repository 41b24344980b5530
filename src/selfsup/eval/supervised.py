"""The supervised baseline: the same architecture from random initialisation, trained with labels.

What self-supervised pre-training has to beat: the backbone a run's `BackboneSpec` describes, built with
fresh random weights and trained end to end on all of the labels, or on a stratified fraction of them
(`selfsup.eval.subsets.stratified_subset`, the rows of SimCLR's semi-supervised table), with the same
recipe and budget as `finetune` so the two columns compare like with like. Two settings differ, as they
should for random weights: no layer-wise decay (1.0: the lower layers have nothing to preserve) and the
head starts from timm's / DeiT's N(0, 0.02) rather than MAE's 2e-5 (see FinetuneConfig.head_init_std).

`save_supervised_run` writes the trained backbone as a run directory (`backbone.safetensors` with its spec)
so that every frozen-feature protocol (k-NN, linear probe, ...) can put it next to pre-trained runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from selfsup.data import ImageSet
from selfsup.data.views import channel_stats
from selfsup.eval.context import EvalContext
from selfsup.eval.finetune import FinetuneConfig, fit_and_evaluate
from selfsup.eval.subsets import stratified_subset
from selfsup.models.io import BackboneSpec, save_backbone
from selfsup.options import opt

SCRATCH_HEAD_INIT_STD = 0.02  # timm / DeiT trunc_normal_(std=.02) for every Linear, the head included


@dataclass
class SupervisedOptions(FinetuneConfig):
    """Options of `selfsup eval supervised`: the fine-tuning recipe plus the label fraction."""

    layer_decay: float | None = opt(None, "Not used: random weights train without layer decay (1.0), as "
                                    "layer decay only protects pre-trained lower layers.", paper=1.0, above=0, high=1)
    head_init_std: float = opt(SCRATCH_HEAD_INIT_STD, "Not used: random initialisation uses timm's / DeiT's "
                               f"{SCRATCH_HEAD_INIT_STD} for the head.", paper=SCRATCH_HEAD_INIT_STD, low=0)
    fraction: float = opt(1.0, "Share of each class's training labels (stratified, seeded by --seed). 0.01 and "
                          "0.1 are the semi-supervised rows of SimCLR / BYOL.", paper=1.0, above=0, high=1)
    out: str | None = opt(None, "Run directory for the trained backbone (backbone.safetensors + config.yaml), "
                          "evaluable with --checkpoint like any run. Default: RUN/supervised-FRACTION.")


def spec_for_data(name: str, train: ImageSet, patch_size: int | None = None,
                  img_size: int | None = None) -> BackboneSpec:
    """A BackboneSpec for `train` when no pre-trained run provides one: the images' side and channels,
    their per-channel mean/std (as pre-training computes them)."""
    mean, std = channel_stats(train.images)
    return BackboneSpec(name, img_size or train.size, train.channels, patch_size, mean, std)


def scratch_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """The fine-tuning recipe adapted to random initialisation: no layer decay, timm's head init."""
    return dataclasses.replace(cfg, layer_decay=1.0, head_init_std=SCRATCH_HEAD_INIT_STD)


def random_backbone(spec: BackboneSpec, seed: int = 0) -> nn.Module:
    """`spec`'s architecture with random weights drawn from `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build()


def labelled_subset(train: ImageSet, fraction: float, seed: int = 0) -> torch.Tensor | None:
    """Indices of a stratified `fraction` of the labelled training images; None for all of them."""
    if train.labels is None:
        raise ValueError("the training set has no labels: the supervised baseline needs them")
    return None if fraction >= 1.0 else stratified_subset(train.labels, fraction, seed)


def supervised(spec: BackboneSpec, train: ImageSet, test: ImageSet, cfg: FinetuneConfig | None = None,
               fraction: float = 1.0, device: str | torch.device = "cpu", seed: int = 0,
               out: Path | None = None, data: str | None = None) -> dict:
    """Train `spec`'s architecture from random initialisation on (a stratified `fraction` of) the labels.

    Returns `finetune`'s dict plus {"init": "random", "fraction", "n_labelled"}; with `out`, also saves the
    trained backbone there as a run directory (see `save_supervised_run`; `data` names the dataset in its
    config.yaml) and reports its path.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    idx = labelled_subset(train, fraction, seed)
    res, result = fit_and_evaluate(random_backbone(spec, seed), spec, train, test, scratch_config(cfg or
                                   FinetuneConfig()), device, idx, seed)
    result = {**result, "init": "random", "fraction": fraction, "n_labelled": result["n_train"]}
    if out is not None:
        save_supervised_run(res.model.backbone, spec, Path(out), result, data)
        result["run"] = str(out)
    return result


def save_supervised_run(backbone: nn.Module, spec: BackboneSpec, out: Path, result: dict | None = None,
                        data: str | None = None) -> Path:
    """Write `out/backbone.safetensors` (weights + spec, as pre-training does), with `result` also
    `out/supervised.json`, and with `data` a `config.yaml` naming the method ("supervised") and the data, as
    a pre-training run's does, so evaluation defaults to that data. Returns the backbone path. Evaluate it
    like any run: `--checkpoint out`."""
    path = out / "backbone.safetensors"
    save_backbone(backbone.cpu(), spec, path)
    if result is not None:
        _write(out / "supervised.json", json.dumps(result, indent=1) + "\n")
    if data is not None:
        config = {"method": "supervised", "data": {"name": data},
                  "backbone": {"name": spec.name, "patch_size": spec.patch_size, "width": spec.width,
                               "depth": spec.depth}}
        _write(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)



def supervised_dir(ctx: EvalContext, opts: SupervisedOptions) -> Path:
    return Path(opts.out) if opts.out else ctx.run_dir / f"supervised-{opts.fraction:g}"


def supervised_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Top-1/top-5 of the run's architecture trained from scratch; its backbone is saved as a run directory."""
    ctx.require_backbone()
    opts = ctx.options or SupervisedOptions()
    out = supervised_dir(ctx, opts)
    result = supervised(ctx.spec, ctx.labelled("train"), ctx.labelled("test"), opts, opts.fraction, ctx.device,
                        ctx.seed, out=out, data=ctx.data)
    result["settings"] = {**result["settings"], "fraction": opts.fraction, "init": "random", "run": str(out)}
    return {k: v for k, v in result.items() if k not in ("init", "run")}


__all__ = ["SupervisedOptions", "labelled_subset", "random_backbone", "save_supervised_run", "scratch_config",
           "spec_for_data", "supervised", "supervised_dir", "supervised_protocol"]
