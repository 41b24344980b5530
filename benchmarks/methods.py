"""Every pre-training method on the same data, backbone, views, optimiser, budget and seed.

    .venv/bin/python benchmarks/methods.py [--minutes 3] [--methods simclr,byol] [--data fashion-mnist]
                                           [--recipe shared|paper]

Each method is pre-trained in its own process (so its peak memory is its own) for the same wall-clock
budget, then its exported backbone is measured on the test split:
  - k-NN top-1 (k=20, T=0.07, cosine, weighted votes: DINO's eval_knn.py),
  - a linear probe of the frozen features (selfsup.eval.linear: BatchNorm + linear layer, learning rate
    chosen on a validation split carved from train),
  - SimSiam's collapse measure: the per-dimension std of the L2-normalised test features (0 = collapsed,
    1/sqrt(d) = spread like an isotropic Gaussian).
Raw pixels and the randomly initialised backbone are rows of the same table. Writes docs/methods.md and
docs/methods.json; the README links the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn

from selfsup.config import ConfigError
from selfsup.data import Splits, load_data
from selfsup.diagnostics.collapse import embedding_std, ideal_std
from selfsup.eval.adapt import adapt_splits
from selfsup.eval.features import extract_features
from selfsup.eval.finetune import FinetuneConfig, finetune
from selfsup.eval.knn import knn_classify
from selfsup.eval.linear import linear_probe
from selfsup.machine import machine_words
from selfsup.methods import METHODS
from selfsup.models.io import load_backbone, normalizer

ROOT = Path(__file__).resolve().parents[1]

# --recipe shared: one recipe for every method: the demo's backbone and optimiser (every optimiser option
# stated, so no method's paper recipe applies), two 28-px views (no multi-crop, so that DINO and SwAV see the
# same views as the others), the methods' own CPU-preset heads.
SHARED = {
    "backbone": {"name": "vit-cpu", "patch_size": 7, "drop_path": 0.0},
    "views": {"recipe": "dino", "global_size": 28, "n_global": 2, "n_local": 0, "global_scale": [0.2, 1.0],
              "color_jitter": 0.5, "solarize": 0.0},
    "optim": {"batch_size": 256, "optimizer": "adamw", "lr": 0.001, "lr_bias": None, "min_lr": 1e-6,
              "warmup_epochs": 0.3, "weight_decay": 0.04, "weight_decay_end": 0.4, "decay_norm_bias": False,
              "clip_grad": 3.0},
    "run": {"checkpoint_every": 100000, "eval_knn": False},
}
# --recipe paper: the same backbone, batch and 28-px crops (two views, or one for the single-image methods);
# optimiser and view recipe are each method's paper recipe (docs/options.md).
PAPER = {"backbone": SHARED["backbone"], "views": {"global_size": 28, "n_local": 0},
         "optim": {"batch_size": 256}, "run": SHARED["run"]}
METHOD_OVERRIDES = {"dino": {"out_dim": 1024, "hidden_dim": 1024, "momentum_teacher": 0.99, "freeze_last_layer": 0.1}}


def recipe_for(method: str, recipe: str, size: int) -> dict:
    """The run's sections for `method` at `size`-px crops (ViT patches of size/4)."""
    base = SHARED if recipe == "shared" else PAPER
    views = {**base["views"], "global_size": size}
    if METHODS[method].n_views == 1:  # masked image modelling and the pretext tasks take one view
        views["n_global"] = 1
    return {**base, "backbone": {**base["backbone"], "patch_size": size // 4}, "views": views}


def pretrain_in_process(method: str, data: str, minutes: float, seed: int, out: Path, recipe: str = "shared",
                        size: int = 28) -> dict:
    """`selfsup pretrain` in a child process: its JSON summary plus the child's peak resident memory."""
    out.mkdir(parents=True, exist_ok=True)
    base = recipe_for(method, recipe, size)
    raw = {"method": method, "data": {"name": data, "image_size": size}, **base,
           "optim": {**base["optim"], "minutes": minutes},
           "run": {**base["run"], "out": str(out / "run"), "seed": seed}}
    if method in METHOD_OVERRIDES:
        raw[method] = METHOD_OVERRIDES[method]
    (out / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = [sys.executable, "-m", "selfsup.cli", "pretrain", "--config", str(out / "recipe.yaml"), "--json",
           "--no-progress"]
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{method} failed (exit {status}); see {out / 'log.txt'}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    summary["peak_mem_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def finished_run(out: Path) -> dict | None:
    """The summary of a run this script already finished in `out` (with --reuse), else None. Runs from
    before summaries were saved are read back from metrics.jsonl; their peak memory is unknown."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    if not (out / "run" / "backbone.safetensors").exists():
        return None
    lines = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    lines = [x for x in lines if "images_per_s" in x]
    steps = lines[-1]["step"]
    ips = sum(x["images_per_s"] for x in lines) / len(lines)
    return {"steps": steps, "images_per_s": ips, "minutes": steps * SHARED["optim"]["batch_size"] / ips / 60,
            "peak_mem_mb": None}


def measure(model: nn.Module, prepare, splits: Splits, seed: int, finetune_minutes: float = 0.0) -> dict:
    """k-NN, linear probe and collapse measure of `model`'s frozen features, and with `finetune_minutes` the
    test accuracy after fine-tuning a copy of it (with all labels) for that many minutes."""
    train = extract_features(model, splits.train.images, normalize=prepare)  # (N, D)
    test = extract_features(model, splits.test.images, normalize=prepare)
    knn = knn_classify(train, splits.train.labels, test, splits.test.labels, k=20, temperature=0.07,
                       num_classes=splits.train.num_classes)
    linear = linear_probe(train, splits.train.labels, test, splits.test.labels, splits.train.num_classes, seed=seed)
    tuned = None
    if finetune_minutes and prepare is not None:
        tuned = finetune(model, prepare, splits.train, splits.test, FinetuneConfig(minutes=finetune_minutes),
                         seed=seed)["top1"]
    return {"knn": knn.top1, "linear": linear["top1"], "finetune": tuned,
            "feature_std": embedding_std(test) / ideal_std(test.shape[1])}


def trainable_on(method: str, channels: int) -> bool:
    """Whether `method` pre-trains on data with `channels` channels (colorization needs colour)."""
    try:
        METHODS[method].input_channels(channels)
    except ConfigError:
        return False
    return True


def head_std(run: Path) -> float | None:
    """The method's own collapse measure at the end of training: `emb_std` of its head's outputs (DINO: of
    its backbone embeddings; logged per interval in metrics.jsonl) over the isotropic value 1/sqrt(d)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [x for x in lines if "emb_std" in x]
    return last[-1]["emb_std"] / last[-1]["emb_std_ideal"] if last and "emb_std_ideal" in last[-1] else None


def row(name: str, backbone: str, m: dict, run: dict | None = None) -> dict:
    run = run or {}
    return {"method": name, "backbone": backbone, **m, **{k: run.get(k) for k in
            ("epochs", "minutes", "images_per_s", "peak_mem_mb", "steps", "head_std", "recipe")}}


def recipe_used(run: Path) -> str:
    """The optimiser and view recipe a run trained with, from its saved config.yaml."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    o, v = cfg["optim"], cfg["views"]
    views = (f"views {v.get('recipe', 'dino')}" if v.get("color_jitter", 0.8) > 0 else  # single-image methods
             f"1 view, crop {v['global_scale'][0]:g}-{v['global_scale'][1]:g}, no colour jitter")
    return f"{o['optimizer']} lr {o['lr']:g} wd {o['weight_decay']:g}, {views}"


def refresh_recipes(rows: list[dict], work: Path) -> None:
    """The recipe column re-read from the runs' config.yaml where they are still in `work`."""
    for r in rows:
        if (work / r["method"] / "run" / "config.yaml").exists():
            r["recipe"] = recipe_used(work / r["method"] / "run")


def run_all(methods: list[str], data: str, minutes: float, seed: int, work: Path, reuse: bool = False,
            recipe: str = "shared", size: int = 28, finetune_minutes: float = 0.0, baselines: bool = True
            ) -> list[dict]:
    """The table's rows: raw pixels and random init (unless not `baselines`), then each method trained."""
    splits = load_data(data, size)
    rows = [row("raw pixels", "-", measure(nn.Flatten(), None, splits, seed))] if baselines else []
    for method in methods:
        if not trainable_on(method, splits.train.channels):
            print(f"{method}: skipped, it needs colour images and {data} has {splits.train.channels} channel(s)")
            continue
        t0 = time.time()
        summary = (reuse and finished_run(work / method)) or pretrain_in_process(method, data, minutes, seed,
                                                                                  work / method, recipe, size)
        model, spec = load_backbone(work / method / "run" / "backbone.safetensors")
        splits_m = adapt_splits(splits, spec.in_chans, size)[0]  # colorization's backbone reads lightness
        if baselines and not any(r["method"] == "random init" for r in rows):  # the same architecture, untrained
            torch.manual_seed(seed)
            rows.append(row("random init", spec.name, measure(spec.build(), normalizer(spec), splits_m, seed,
                                                              finetune_minutes)))
        summary["epochs"] = summary["steps"] / (len(splits.train.images) // SHARED["optim"]["batch_size"])
        summary["head_std"] = head_std(work / method / "run")
        summary["recipe"] = recipe_used(work / method / "run")
        rows.append(row(method, spec.name, measure(model, normalizer(spec), splits_m, seed, finetune_minutes),
                        summary))
        print(f"{method}: k-NN {rows[-1]['knn']:.2f}%, linear {rows[-1]['linear']:.2f}% "
              f"({(time.time() - t0) / 60:.1f} min)", flush=True)
    return rows


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict], args: argparse.Namespace, machine: str | None = None, date: str | None = None
             ) -> str:
    """docs/methods.md from the rows; `machine` (CPU and threads) and `date` default to now and here."""
    shared = args.recipe == "shared"
    size = getattr(args, "size", 28)
    crops = f"{size}-px crops ({size // 4}x{size // 4}-px patches; two views, one for the single-image methods)"
    how = (f"with the shared recipe in the script (vit-cpu, {crops}, AdamW, batch 256)"
           if shared else f"with each method's paper recipe (optimiser and views, docs/options.md) on vit-cpu "
           f"with {crops} and batch 256")
    tune = getattr(args, "finetune_minutes", 0)
    tuned = (f" `fine-tune` is the test accuracy after fine-tuning the whole backbone with a linear head on all "
             f"labels for {tune} minutes (selfsup.eval.finetune defaults: MAE's recipe with layer decay 0.65); on "
             "the random-init row that is supervised training from scratch on the same budget. Masked image "
             "modelling does not train its [CLS] token to be a global descriptor (the MAE paper reports "
             "fine-tuning and linear probing, not k-NN, for that reason), so the three columns are read side by "
             "side, not one alone. A fine-tuning budget this short can end below the linear probe of the same "
             "features, as several rows do here." if tune else "")
    lines = [
        f"# Methods on {args.data}: same backbone, {'views, optimiser, ' if shared else ''}budget and seed", "",
        f"Written by `benchmarks/methods.py --minutes {args.minutes} --data {args.data} --recipe {args.recipe}"
        f"{f' --size {size}' if size != 28 else ''}{f' --finetune-minutes {tune}' if tune else ''}` on "
        f"{date or time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {machine or machine_words()}, no GPU.",
        f"Each method trained for {args.minutes} wall-clock minutes (the step count is calibrated from its "
        f"measured speed) from seed 0 {how} and its own CPU-preset head options (docs/options.md); the "
        "`recipe` column says which optimiser and views each row used. Test split: k-NN top-1 "
        "(k=20, T=0.07) and linear probe of the frozen backbone features. The last two columns are SimSiam's "
        "collapse measure, the per-dimension std of L2-normalised embeddings, divided by its value for "
        "isotropic Gaussian embeddings (1/sqrt(d)): 0 means collapsed, 1 means spread in every direction. "
        "`head std` is measured on the method's head outputs over the last logging interval of training "
        "(where the loss acts), `feature std` on the backbone features of the test images (not centred, so "
        f"a shared mean direction lowers it without collapse).{tuned}",
        *([] if shared else ["", "The paper recipes are taken as they are: most warm up for 10 epochs (MoCo v3's "
                             "and MAE's ViT recipes for 40), longer than these runs, so their learning rate is "
                             "still rising when time is up; and the papers with ResNet recipes only (SimCLR, BYOL, "
                             "Barlow Twins, VICReg, SwAV: LARS; SimSiam, MoCo v2: SGD) train the ViT with them. "
                             "The pretext tasks' papers trained CNNs with SGD; on a ViT their recipes switch to "
                             "AdamW (docs/options.md says so per option), and colorization and inpainting keep "
                             "their papers' Adam settings. The rows show each paper's recipe at this budget, not "
                             "each method's best; `--recipe shared` compares the losses under one optimiser."]),
        "",
        "| method | recipe | backbone | epochs | train minutes | images/s | peak mem (MB) | k-NN top-1 (%) | "
        f"linear top-1 (%) |{' fine-tune top-1 (%) |' if tune else ''} head std | feature std |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if tune else "") + "---|---|"]
    later = [r for r in rows if r.get("date") and r["date"] != (date or time.strftime("%Y-%m-%d"))]
    if later:
        lines[-2:-2] = ["Rows added later with `--add` (the same recipe, budget and seed): " + "; ".join(
            f"{r['method']} on {r['date']} ({r['machine']})" for r in later) + ".", ""]
    for r in rows:
        lines.append(f"| {r['method']} | {r.get('recipe') or '-'} | {r['backbone']} | {fmt(r['epochs'], '.2f')} | "
                     f"{fmt(r['minutes'], '.1f')} | "
                     f"{fmt(r['images_per_s'], '.0f')} | {fmt(r['peak_mem_mb'], '.0f')} | {r['knn']:.2f} | "
                     f"{r['linear']:.2f} |{' ' + fmt(r.get('finetune'), '.2f') + ' |' if tune else ''} "
                     f"{fmt(r['head_std'], '.3f')} | {r['feature_std']:.3f} |")
    return "\n".join(lines) + "\n"


def add_rows(args: argparse.Namespace, work: Path) -> None:
    """Train args.methods with the saved table's settings and merge their rows (dated) into it."""
    path = Path(args.out).with_suffix(".json")
    if not path.exists():
        sys.exit(f"--add: {path} does not exist; run the table once without --add first")
    saved = json.loads(path.read_text())
    a = argparse.Namespace(**saved["args"])
    new = run_all(args.methods.split(","), a.data, a.minutes, a.seed, work, args.reuse, a.recipe,
                  getattr(a, "size", 28), getattr(a, "finetune_minutes", 0.0), baselines=False)
    for r in new:
        r.update(date=time.strftime("%Y-%m-%d"), machine=machine_words())
    names = {r["method"] for r in new}
    saved["rows"] = [r for r in saved["rows"] if r["method"] not in names] + new
    path.write_text(json.dumps(saved, indent=1))
    Path(args.out).write_text(markdown(saved["rows"], a, saved.get("machine"), saved.get("date")))
    print(Path(args.out).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per method")
    p.add_argument("--methods", default=",".join(m for m in METHODS if m != "distill"),
                   help="comma-separated (default: all registered but distill, which needs a teacher)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=28, help="crop side in px (ViT patches of size/4); data that is "
                   "generated (cluttered) is generated at this size")
    p.add_argument("--finetune-minutes", type=float, default=0.0, help="also fine-tune each backbone (and the "
                   "random init: supervised from scratch) for this many minutes on all labels; 0: skip")
    p.add_argument("--recipe", choices=("shared", "paper"), default="shared", help="shared: one optimiser and "
                   "views for all (the script's); paper: each method's paper recipe")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-methods"), help="run directories go here")
    p.add_argument("--out", default=str(ROOT / "docs" / "methods.md"))
    p.add_argument("--reuse", action="store_true", help="measure runs already finished in --work again instead "
                   "of re-training them (after an interruption)")
    p.add_argument("--add", action="store_true", help="train --methods only and put their rows into --out's "
                   "table (replacing rows of the same name), with the table's own recipe, budget, seed and size")
    p.add_argument("--render", action="store_true", help="only rewrite --out from the rows of its .json (after "
                   "a change to the table's text)")
    args = p.parse_args()
    if args.render:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        if saved["args"].get("work"):
            refresh_recipes(saved["rows"], Path(saved["args"]["work"]))
        Path(args.out).with_suffix(".json").write_text(json.dumps(saved, indent=1))
        Path(args.out).write_text(markdown(saved["rows"], argparse.Namespace(**saved["args"]), saved.get("machine"),
                                           saved.get("date")))
        return
    work = Path(args.work)
    if work.exists() and any(work.iterdir()) and not args.reuse:
        sys.exit(f"{work} is not empty: pass a new --work directory")
    if args.add:
        add_rows(args, work)
        return
    rows = run_all(args.methods.split(","), args.data, args.minutes, args.seed, work, args.reuse, args.recipe,
                   args.size, args.finetune_minutes)
    text = markdown(rows, args)
    Path(args.out).write_text(text)
    record = {"args": vars(args), "rows": rows, "machine": machine_words(), "date": time.strftime("%Y-%m-%d")}
    Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(text)


if __name__ == "__main__":
    main()
