"""`selfsup demo`: pre-training on the bundled data (the recipe in configs/demo.yaml), then one k-NN protocol
for three feature sets: the learned backbone, the same network at random initialisation, raw pixels."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import PretrainConfig
from selfsup.data import DataNotFound
from selfsup.data.fashion_mnist import find_fashion_mnist
from selfsup.engine.pretrain import pretrain
from selfsup.eval.knn import knn_eval
from selfsup.machine import machine_words
from selfsup.models.io import load_backbone, normalizer


def choose_data(cfg: PretrainConfig) -> PretrainConfig:
    """Fashion-MNIST where installed, else scikit-learn's digits, with a one-line notice."""
    if cfg.data.name != "fashion-mnist":
        return cfg
    try:
        find_fashion_mnist()  # presence only: the run loads it once
    except DataNotFound as e:
        print(f"notice: Fashion-MNIST not found ({e}); using scikit-learn's digits instead", file=sys.stderr)
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name="digits"))
    return cfg


def fresh_out(cfg: PretrainConfig) -> PretrainConfig:
    """A new run directory: runs/demo, else runs/demo-2, -3, ... so a second demo never stops on the first."""
    base, n = Path(cfg.run.out), 1
    out = base
    while (out / "checkpoints").exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=str(out)))


def run_demo(cfg: PretrainConfig, progress: bool = True) -> dict[str, Any] | None:
    t0 = time.time()
    cfg = fresh_out(choose_data(cfg))
    result = pretrain(cfg, resume=False, progress=progress)
    if result.interrupted:
        raise SystemExit(f"demo interrupted; the run is in {result.out}")
    if not result.is_main:
        return None
    splits = result.splits  # the data the run trained and evaluated on, not loaded again
    learned, spec = load_backbone(result.out / "backbone.safetensors")
    torch.manual_seed(cfg.run.seed)  # the same initialisation the run started from
    rows = {
        "learned": result.knn["top1"] if result.knn else knn_eval(learned, normalizer(spec), splits).top1,
        "random": knn_eval(spec.build(), normalizer(spec), splits).top1,
        "pixels": knn_eval(nn.Flatten(), None, splits).top1,  # [0, 1] pixels
    }
    minutes = (time.time() - t0) / 60
    epochs = round(result.steps * cfg.optim.batch_size / len(splits.train), 2)  # printed and reported alike
    _print_table(cfg, rows, result, minutes, epochs)
    summary = {"dataset": cfg.data.name, "method": cfg.method, "backbone": cfg.backbone.name,
               "feature": cfg.backbone.pool, "knn_learned": rows["learned"], "knn_random": rows["random"],
               "knn_pixels": rows["pixels"], "minutes": round(minutes, 2), "train_minutes": round(result.minutes, 2),
               "steps": result.steps, "epochs": round(epochs, 2), "images_per_s": round(result.images_per_s, 1),
               "machine": machine_words(), "out": str(result.out)}
    (result.out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _print_table(cfg: PretrainConfig, rows: dict[str, float], result, minutes: float, epochs: float) -> None:
    print(f"\nselfsup demo: {cfg.method}, {cfg.backbone.name} on {cfg.data.name}; {result.steps} steps = "
          f"{epochs:.1f} epochs ({result.images_per_s:.0f} images/s) in {result.minutes:.1f} min of training, "
          f"{minutes:.1f} min in all, on {machine_words()}")
    split = f"the {cfg.data.holdout:.0%} held out of the training images" if cfg.data.holdout else "the test split"
    print(f"k-NN on {split} (k=20, cosine, T=0.07 weighted votes); network feature: {cfg.backbone.pool}")
    print("| features                  | top-1 (%) |\n|---------------------------|-----------|")
    names = {"learned": f"{cfg.method} (learned)", "random": "same network, random init", "pixels": "raw pixels"}
    for key, name in names.items():
        print(f"| {name:<25} | {rows[key]:9.2f} |")
