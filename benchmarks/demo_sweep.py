"""The measurements behind the demo recipe, chosen on a validation split (never on the test split).

    .venv/bin/python benchmarks/demo_sweep.py [--minutes 10] [--only 'NAME;NAME'] [--threads N]
    .venv/bin/python benchmarks/demo_sweep.py --curve 60          # the chosen recipe's accuracy vs minutes
    .venv/bin/python benchmarks/demo_sweep.py --table             # rewrite docs/demo_sweep.md only
    .venv/bin/python benchmarks/demo_sweep.py --only 'demo recipe' --features  # + every ViT feature

Every variant is the demo recipe (src/selfsup/configs/demo.yaml) with the changes its name lists (one, or one
on top of an earlier variant's), pre-trained for the same
wall-clock budget from the same seed on Fashion-MNIST's training images less a stratified held-out sixth
(`--data.holdout 0.1667`: 50,000 to train on, 10,000 to evaluate), and scored by k-NN top-1 (k=20, T=0.07,
cosine) on those 10,000 held-out images, with raw pixels on the same split as the floor. The test split is
not read here: `selfsup demo` reads it once for the chosen recipe. Each run appends one record (CPU,
threads, date, epochs, images/s, accuracy) to docs/demo_sweep.jsonl, and the table in docs/demo_sweep.md
is written from all records, so runs on several machines or sessions add up. `--curve M` trains the demo
recipe for M minutes with a k-NN every few hundred steps and records the curve (plotted against the pixel
floor in docs/demo_curve.png). `--features` also scores each trained network with every ViT feature
(`--backbone.pool` is read by evaluation only, so one training serves them all), one record per feature
named "NAME, feature F". Its schedules are planned for the M minutes, so a point at m < M has a higher
learning rate than a run planned for m minutes would end with: the curve reads low, not high.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import build_config, merge, recipe
from selfsup.data import load_data
from selfsup.engine.pretrain import pretrain
from selfsup.eval.context import with_feature
from selfsup.eval.knn import knn_eval
from selfsup.eval.subsets import holdout_splits
from selfsup.machine import cpu_name
from selfsup.models.io import load_backbone, normalizer
from selfsup.models.vit import POOLS, VIT_PRESETS

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "demo_sweep.jsonl"
HOLDOUT = 0.1667  # 10,000 of Fashion-MNIST's 60,000 training images
# The single-image methods' views (one crop of 0.2-1 of the area, flipped, nothing else) and MAE's optimiser
# (AdamW betas 0.9/0.95, weight decay 0.05, no clipping), at the demo's learning rate and warm-up (the paper's
# 40 warm-up epochs do not fit a few CPU minutes).
MAE_VIEWS = {"n_global": 1, "global_scale": [0.2, 1.0], "color_jitter": 0.0, "grayscale": 0.0, "blur": False,
             "solarize": 0.0}
MAE_OPTIM = {"betas": [0.9, 0.95], "weight_decay": 0.05, "weight_decay_end": 0.05, "clip_grad": 0.0}
# iBOT and DINOv2 as the former DINO demo ran: DINOv2's crop scales with 4 local crops of 14 px, a 1024-prototype
# head, teacher momentum 0.99 and a teacher-temperature warm-up of 1 epoch (their 30 do not fit ~4 CPU epochs);
# every patch token kept (masked image modelling reads them all); LayerScale and the rest at their CPU presets.
DINO_VIEWS = {"recipe": "dino", "n_local": 4, "local_size": 14, "global_scale": [0.32, 1.0],
              "local_scale": [0.05, 0.32]}
DINO_HEAD = {"out_dim": 1024, "hidden_dim": 1024, "momentum_teacher": 0.99, "freeze_last_layer": 0.1,
             "warmup_teacher_temp_epochs": 1.0}
# Changes from the demo recipe. Heads and methods at their CPU presets unless named.
VARIANTS: dict[str, dict[str, Any]] = {
    "demo recipe": {},
    "MoCo v3": {"method": "moco-v3", "moco-v3": {"proj_hidden_dim": 1024, "pred_hidden_dim": 1024}},
    "DINO multi-crop (the former demo)": {
        "method": "dino", "backbone": {"pool": "cls"},
        "views": {"n_local": 4, "local_size": 14, "global_scale": [0.3, 1.0], "local_scale": [0.1, 0.4]},
        "dino": {"out_dim": 1024, "hidden_dim": 1024, "momentum_teacher": 0.99, "freeze_last_layer": 0.1}},
    "feature cls": {"backbone": {"pool": "cls"}},
    "feature mean": {"backbone": {"pool": "mean"}},
    # issue 32: the head reads the pooled feature that evaluation reads (the demo's head reads CLS, and its pooled
    # features stay below raw pixels)
    "head and feature mean": {"backbone": {"train_pool": "mean", "pool": "mean"}},
    "temperature 0.1": {"simclr": {"temperature": 0.1}},
    "temperature 0.5": {"simclr": {"temperature": 0.5}},
    "projector 512 wide": {"simclr": {"proj_hidden_dim": 512}},
    "lr 5e-4": {"optim": {"lr": 0.0005}},
    "lr 2e-3": {"optim": {"lr": 0.002}},
    "batch 128": {"optim": {"batch_size": 128}},
    "crops (0.4, 1)": {"views": {"global_scale": [0.4, 1.0]}},
    "crops (0.6, 1)": {"views": {"global_scale": [0.6, 1.0]}},
    "crops (0.8, 1)": {"views": {"global_scale": [0.8, 1.0]}},
    "crops (0.6, 1) + temperature 0.1": {"views": {"global_scale": [0.6, 1.0]}, "simclr": {"temperature": 0.1}},
    "crops (0.6, 1) + batch 128": {"views": {"global_scale": [0.6, 1.0]}, "optim": {"batch_size": 128}},
    "crops (0.6, 1) + width 96": {"views": {"global_scale": [0.6, 1.0]}, "backbone": {"width": 96}},
    "crops (0.6, 1) + depth 6": {"views": {"global_scale": [0.6, 1.0]}, "backbone": {"depth": 6}},
    "crops (0.4, 1) + 4 local crops": {"views": {"global_scale": [0.4, 1.0], "n_local": 4, "local_size": 14}},
    "crops (0.4, 1) + 2 local crops": {"views": {"global_scale": [0.4, 1.0], "n_local": 2, "local_size": 14}},
    "crops (0.4, 1) + temperature 0.1": {"views": {"global_scale": [0.4, 1.0]}, "simclr": {"temperature": 0.1}},
    "crops (0.4, 1) + batch 128": {"views": {"global_scale": [0.4, 1.0]}, "optim": {"batch_size": 128}},
    "crops (0.4, 1) + width 96": {"views": {"global_scale": [0.4, 1.0]}, "backbone": {"width": 96}},
    "crops (0.4, 1) + depth 3": {"views": {"global_scale": [0.4, 1.0]}, "backbone": {"depth": 3}},
    "crops (0.4, 1) + width 192": {"views": {"global_scale": [0.4, 1.0]}, "backbone": {"width": 192}},
    "crops (0.4, 1) + depth 6": {"views": {"global_scale": [0.4, 1.0]}, "backbone": {"depth": 6}},
    "width 96": {"backbone": {"width": 96}},
    "width 192": {"backbone": {"width": 192}},
    "ResNet-18 of width 16": {"backbone": {"name": "resnet18", "width": 16, "patch_size": None}},
    "no blur": {"views": {"blur": False}},
    "no colour jitter": {"views": {"color_jitter": 0.0}},
    "colour jitter p 0.8": {"views": {"color_jitter": 0.8}},
    "weights EMA 0.99": {"optim": {"eval_ema": 0.99}},
    "weights EMA 0.996": {"optim": {"eval_ema": 0.996}},
    "decoupled loss (DCL)": {"simclr": {"decoupled": True}},
    "crops (0.5, 1)": {"views": {"global_scale": [0.5, 1.0]}},
    "no colour jitter, crops (0.5, 1)": {"views": {"color_jitter": 0.0, "global_scale": [0.5, 1.0]}},
    "SimCLR's view recipe": {"views": {"recipe": "simclr"}},
    "SimCLR's view recipe, crops (0.5, 1)": {"views": {"recipe": "simclr", "global_scale": [0.5, 1.0]}},
    "SimCLR's view recipe, jitter p 0.8": {"views": {"recipe": "simclr", "color_jitter": 0.8}},
    "SimCLR's views, crops (0.5, 1), jitter strength 1.25": {
        "views": {"recipe": "simclr", "global_scale": [0.5, 1.0], "jitter_strength": 1.25}},
    "SimCLR's views, crops (0.5, 1), weights EMA 0.99": {
        "views": {"recipe": "simclr", "global_scale": [0.5, 1.0]}, "optim": {"eval_ema": 0.99}},
    "SimCLR's views, crops (0.6, 1)": {"views": {"recipe": "simclr", "global_scale": [0.6, 1.0]}},
    "SimCLR's views, crops (0.5, 1), jitter p 0.8": {
        "views": {"recipe": "simclr", "global_scale": [0.5, 1.0], "color_jitter": 0.8}},
    "SimCLR's view recipe, weights EMA 0.99": {"views": {"recipe": "simclr"}, "optim": {"eval_ema": 0.99}},
    "SimCLR's view recipe, DCL": {"views": {"recipe": "simclr"}, "simclr": {"decoupled": True}},
    "MAE": {"method": "mae", "views": MAE_VIEWS, "optim": MAE_OPTIM},
    "MAE, 4x4 patches": {"method": "mae", "views": MAE_VIEWS, "optim": MAE_OPTIM, "backbone": {"patch_size": 4}},
    "MAE, lr 3e-3": {"method": "mae", "views": MAE_VIEWS, "optim": {**MAE_OPTIM, "lr": 0.003}},
    "MAE, mask 0.5": {"method": "mae", "views": MAE_VIEWS, "optim": MAE_OPTIM, "mae": {"mask_ratio": 0.5}},
    "patch dropout 0.5": {"backbone": {"patch_dropout": 0.5}},
    "patch dropout 0.25": {"backbone": {"patch_dropout": 0.25}},
    "patch dropout 0.75": {"backbone": {"patch_dropout": 0.75}},
    "4x4 patches + patch dropout 0.75": {"backbone": {"patch_dropout": 0.75, "patch_size": 4}},
    "4x4 patches + patch dropout 0.5": {"backbone": {"patch_dropout": 0.5, "patch_size": 4}},
    "conv stem": {"backbone": {"stem": "conv"}},
    "conv stem + patch dropout 0.5": {"backbone": {"stem": "conv", "patch_dropout": 0.5}},
    "rotation": {"method": "rotation", "views": MAE_VIEWS, "optim": MAE_OPTIM},
    "rotation, crops (0.5, 1)": {"method": "rotation", "views": {**MAE_VIEWS, "global_scale": [0.5, 1.0]},
                                 "optim": MAE_OPTIM},
    "rotation, batch 64": {"method": "rotation", "views": MAE_VIEWS, "optim": {**MAE_OPTIM, "batch_size": 64}},
    "iBOT multi-crop": {"method": "ibot", "backbone": {"patch_dropout": 0.0}, "views": DINO_VIEWS,
                        "ibot": DINO_HEAD},
    "iBOT, the demo's two views": {"method": "ibot", "backbone": {"patch_dropout": 0.0}, "ibot": DINO_HEAD},
    "DINOv2 multi-crop": {"method": "dinov2", "backbone": {"patch_dropout": 0.0}, "views": DINO_VIEWS,
                          "dinov2": DINO_HEAD},
}



def machine() -> dict[str, Any]:
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def variant(overrides: dict[str, Any]) -> dict[str, Any]:
    """The demo recipe with `overrides`; another method drops the demo method's own section."""
    base = recipe("demo")
    if overrides.get("method", base["method"]) != base["method"]:
        base.pop(base["method"], None)
    return merge(base, overrides)


def train(name: str, overrides: dict[str, Any], minutes: float, out: Path, knn_every: int = 0) -> dict[str, Any]:
    """Pre-train the demo recipe with `overrides` on the held-out split; k-NN on the held-out images."""
    raw = variant(overrides)
    raw = merge(raw, {"data": {"holdout": HOLDOUT}, "optim": {"minutes": minutes},
                      "run": {"out": str(out), "knn_every": knn_every, "eval_knn": True,
                              "checkpoint_every": 10**6}})
    cfg = build_config(raw, where=name)
    result = pretrain(cfg, progress=False)
    epochs = result.steps * cfg.optim.batch_size / len(result.splits.train)
    record = {"variant": name, "overrides": overrides, "recipe": variant(overrides), "minutes_budget": minutes,
              "train_minutes": round(result.minutes, 2), "steps": result.steps, "epochs": round(epochs, 2),
              "images_per_s": round(result.images_per_s), "val_top1": result.knn["top1"], **machine()}
    if knn_every:
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        record["curve"] = [(x["train_minutes"], x["knn_top1"]) for x in lines if "knn_top1" in x]
    return record


def feature_records(record: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """`record`'s trained network (its backbone in `out`) scored with every ViT feature on the held-out split,
    one record each, named "NAME, feature F" (the pool is evaluation-only: the training is the same)."""
    backbone, spec = load_backbone(out / "backbone.safetensors")
    splits = holdout_splits(load_data("fashion-mnist"), HOLDOUT, 0)
    records = []
    for pool in [p for p in POOLS if p != spec.pool] if spec.name in VIT_PRESETS else []:
        model, pooled = with_feature(backbone, spec, pool)
        top1 = knn_eval(model.eval(), normalizer(pooled), splits).top1
        overrides = merge(record["overrides"], {"backbone": {"pool": pool}})
        records.append({**record, "variant": f"{record['variant']}, feature {pool}", "overrides": overrides,
                        "recipe": variant(overrides), "val_top1": top1})
    return records


def pixels_record() -> dict[str, Any]:
    splits = holdout_splits(load_data("fashion-mnist"), HOLDOUT, 0)
    return {"variant": "raw pixels", "val_top1": knn_eval(nn.Flatten(), None, splits).top1, **machine()}


def load_records() -> list[dict[str, Any]]:
    return [json.loads(x) for x in RECORDS.read_text().splitlines()] if RECORDS.exists() else []


def of_demo_recipe(r: dict[str, Any]) -> bool:
    """Whether record `r` trained today's demo recipe: its full recipe (recorded since the demo took patch
    dropout and the conv stem) equals src/selfsup/configs/demo.yaml, whatever its variant was called then."""
    return r.get("recipe") == variant({})


def table(records: list[dict[str, Any]]) -> str:
    """docs/demo_sweep.md from every record, newest first per (variant, budget, CPU)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if "curve" not in r:
            latest[(r["variant"], r.get("minutes_budget"), r["cpu"], r["threads"])] = r
    lines = ["# Demo recipe sweep (validation split)", "",
             f"Written by `benchmarks/demo_sweep.py` from {RECORDS.name}. Fashion-MNIST: pre-trained on 50,000 "
             "training images, k-NN top-1 (k=20, T=0.07, cosine) on the other 10,000 training images "
             "(stratified, seed 0). The test split is not read here. Each variant is the demo recipe of its "
             "day (src/selfsup/configs/demo.yaml) with the changes named, for the same wall-clock budget "
             "(trained: the minutes it got, which a busy machine can cut short). Records without a full recipe "
             "predate the demo's conv stem and patch dropout: their base is SimCLR on vit-cpu with the patchify "
             "stem; rows marked *(= demo)* trained today's demo recipe. Rows naming only 'AMD EPYC' predate recording "
             "the CPU's family and model (a family 25 model 17 machine, about 1.4x the demo's speed of model 1).", "",
             "| variant | budget (min) | trained (min) | epochs | images/s | val k-NN top-1 (%) | CPU, threads "
             "| date |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(latest.values(), key=lambda r: (r["cpu"], -(r.get("minutes_budget") or 0), -r["val_top1"])):
        name = f"{r['variant']} *(= demo)*" if of_demo_recipe(r) else r["variant"]
        lines.append(f"| {name} | {r.get('minutes_budget', '-')} | {r.get('train_minutes', '-')} | "
                     f"{r.get('epochs', '-')} | "
                     f"{r.get('images_per_s', '-')} | {r['val_top1']:.2f} | {r['cpu']}, {r['threads']} | "
                     f"{r['date']} |")
    pixels = next((r["val_top1"] for r in records if r["variant"] == "raw pixels"), None)
    for r in (r for r in records if "curve" in r):
        points = ", ".join(f"{m:.1f} min: {a:.2f}" for m, a in r["curve"])
        name = "today's demo recipe" if of_demo_recipe(r) else f"`{r['variant']}` (of its day)"
        lines += ["", f"Curve of {name} ({r['minutes_budget']} min, {r['cpu']}, {r['threads']} "
                  f"threads, {r['date']}): {points}; final {r['val_top1']:.2f} after {r['epochs']} epochs. "
                  f"{crossing(r['curve'], pixels)}"]
    return "\n".join(lines) + "\n"


def crossing(curve: list[tuple[float, float]], pixels: float | None) -> str:
    """Where a curve of (minutes, accuracy) first passes the raw-pixel floor, said in words."""
    if pixels is None:
        return ""
    above = [m for m, a in curve if a > pixels]
    if above:
        return f"It first passes raw pixels ({pixels:.2f}) at {above[0]:.1f} min."
    best = max(curve, key=lambda p: p[1])
    return f"It stays under raw pixels ({pixels:.2f}); closest {best[1]:.2f} at {best[0]:.1f} min."


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """docs/demo_curve.png: every recorded curve, k-NN against training minutes, and the pixel floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in (r for r in records if "curve" in r):
        m, a = zip(*r["curve"], strict=True)
        ax.plot(m, a, marker="o", label=f"{r['variant']}, {r['minutes_budget']} min plan ({r['cpu']}, "
                f"{r['threads']} threads)")
    for top1 in sorted({r["val_top1"] for r in records if r["variant"] == "raw pixels"}):
        ax.axhline(top1, color="gray", linestyle="--", label=f"raw pixels ({top1:.2f})")
    ax.set(xlabel="training minutes", ylabel="val k-NN top-1 (%)", title="Demo recipe: k-NN vs minutes")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=None, help="budget per variant (default: the demo's)")
    p.add_argument("--only", default="", help="variant names separated by ';' (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--curve", type=float, default=None, help="train the demo recipe this many minutes with a "
                   "k-NN curve, instead of the variants")
    p.add_argument("--knn-every", type=int, default=400, help="steps between the curve's k-NN points")
    p.add_argument("--table", action="store_true", help="only rewrite docs/demo_sweep.md from the records")
    p.add_argument("--features", action="store_true", help="also score each trained ViT with every feature "
                   "(--backbone.pool), one record each")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    minutes = args.minutes or recipe("demo")["optim"]["minutes"]
    new: list[dict[str, Any]] = []
    if not args.table:
        if not any(r["variant"] == "raw pixels" for r in load_records()):
            new.append(pixels_record())
        only = [args.only] if args.only in VARIANTS else [n.strip() for n in args.only.split(";") if n.strip()]
        names = [n for n in VARIANTS if not only or n in only]
        if only and len(names) != len(only):
            raise SystemExit(f"--only: unknown variant in {args.only!r}; choose from {'; '.join(VARIANTS)}")
        with tempfile.TemporaryDirectory() as tmp:
            if args.curve:
                new.append(train("demo recipe", {}, args.curve, Path(tmp) / "curve", args.knn_every))
            for i, name in enumerate([] if args.curve else names):
                record = train(name, VARIANTS[name], minutes, Path(tmp) / str(i))
                records = [record] + (feature_records(record, Path(tmp) / str(i)) if args.features else [])
                print("\n".join(json.dumps(r) for r in records), flush=True)
                _append(records)
    _append(new)
    (ROOT / "docs" / "demo_sweep.md").write_text(table(load_records()))
    if any("curve" in r for r in load_records()):
        plot(load_records(), ROOT / "docs" / "demo_curve.png")
    print(table(load_records()))


def _append(records: list[dict[str, Any]]) -> None:
    with RECORDS.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
