"""Choose the DINO ablation recipes' learning rate on a validation split; the test split is not read.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ablation_screen.py [--only NAME ...]
                                                      [--work runs/ablation-screen]

The reference row of configs/ablations/dino-components.yaml as it was before this screen (BASE: one epoch, seed
0) pre-trains once per candidate (CANDIDATES: the base learning rate at batch 256, the batch size, the head's
last layer) on 54,000 of Fashion-MNIST's 60,000 train images (--data.holdout 0.1) and is scored by the engine's
k-NN (k=20, T=0.07) on the other 6,000, beside the same backbone at random init. The DINO recipes in
configs/ablations/ take the optimiser and head of the candidate with the best validation k-NN
(tests/benchmarks/test_ablation_screen.py fails if they drift apart).
Finished candidates in --work are read back, not rerun. Writes docs/ablation_screen.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.config import build_config, merge
from selfsup.engine.pretrain import pretrain
from selfsup.eval.context import build_context
from selfsup.eval.knn import KnnOptions
from selfsup.eval.protocols import run_protocol
from selfsup.eval.subsets import holdout_splits
from selfsup.machine import machine_words
from selfsup.models.io import load_backbone, save_backbone

ROOT = Path(__file__).resolve().parents[1]
BASE: dict[str, Any] = {  # configs/ablations/dino-components.yaml's reference row before this screen
    "method": "dino", "data": {"name": "fashion-mnist"},
    "backbone": {"name": "vit-cpu", "patch_size": 7, "drop_path": 0.0},
    "views": {"global_size": 28, "local_size": 14, "n_global": 2, "n_local": 4},
    "optim": {"epochs": 1, "batch_size": 256, "lr": 0.001, "min_lr": 1.0e-6, "warmup_epochs": 0.1,
              "weight_decay": 0.04, "weight_decay_end": 0.4},
    "run": {"seed": 0, "log_every": 20, "checkpoint_every": 100},
    "dino": {"out_dim": 1024, "momentum_teacher": 0.99, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04,
             "freeze_last_layer": 0},
}
HOLDOUT = 0.1  # of the train split, stratified by label, seeded by the recipe's seed
UNNORMALISED = {"norm_last_layer": False}  # the head's last layer free to grow (DINO's advice for ViT-S/16)
CANDIDATES: dict[str, dict[str, Any]] = {  # name -> overrides of the reference row; lr 0.001 was the first value
    **{f"lr {lr:g}": {"optim": {"lr": lr}} for lr in (0.001, 0.004, 0.008)},
    "lr 0.004, unnormalised last layer": {"optim": {"lr": 0.004}, "dino": UNNORMALISED},
    # four times the steps (and teacher updates) for the same epoch: the lever of benchmarks/segmentation_screen.py
    **{f"batch 64, lr {lr:g}": {"optim": {"lr": lr, "batch_size": 64}} for lr in (0.008, 0.016)},
    "batch 32, lr 0.008": {"optim": {"lr": 0.008, "batch_size": 32}},
}


def candidate_raw(name: str, out: Path) -> dict[str, Any]:
    """The recipe's reference row with candidate `name`'s overrides on the held-out split, run in `out`."""
    return merge(BASE, merge(CANDIDATES[name], {"data": {"holdout": HOLDOUT}, "run": {"out": str(out)}}))


def slug(name: str) -> str:
    """A candidate's run folder name: "batch 64, lr 0.008" -> "batch64-lr0.008"."""
    return name.replace(", ", "-").replace(" ", "")


def run_candidate(name: str, work: Path) -> dict[str, Any]:
    out = work / slug(name)
    done = out / "screen.json"
    if done.exists():
        return json.loads(done.read_text())
    raw = candidate_raw(name, out)
    run = pretrain(build_config(raw, where="benchmarks/ablation_screen.py"),
                   resume=(out / "checkpoints" / "last.pt").exists(), progress=False)
    last = [x for x in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in x][-1]
    row = {"name": name, "knn_top1": run.knn["top1"], "steps": run.steps, "train_minutes": round(run.minutes, 2),
           "teacher_entropy": last.get("teacher_entropy"), "log_K": last.get("log_K"),
           "teacher_student_kl": last.get("teacher_student_kl")}
    done.write_text(json.dumps(row))
    return row


def random_row(like: Path, work: Path) -> dict[str, Any]:
    """k-NN on the held-out images of `like`'s backbone at random init (torch seed 0)."""
    out = work / "random"
    if not (out / "screen.json").exists():
        _, spec = load_backbone(like / "backbone.safetensors")
        torch.manual_seed(0)
        save_backbone(spec.build(), spec, out / "backbone.safetensors")
        (out / "config.yaml").write_text((like / "config.yaml").read_text())
        ctx = build_context(out, options=KnnOptions())
        knn = run_protocol("knn", dataclasses.replace(ctx, splits=holdout_splits(ctx.splits, HOLDOUT, 0)),
                           write=False, echo=False)
        (out / "screen.json").write_text(json.dumps({"name": "random init", "knn_top1": knn["numbers"]["top1"]}))
    return json.loads((out / "screen.json").read_text())


def markdown(rec: dict[str, Any]) -> str:
    lines = ["# Choosing the DINO ablation recipes' optimiser and head (validation split)", "",
             f"Written by `benchmarks/ablation_screen.py` on {rec['machine']}, {rec['date']}: the reference row of "
             "configs/ablations/dino-components.yaml as it was before this screen (its budget and seed) "
             "pre-trained once per candidate on 54,000 "
             "of Fashion-MNIST's train images, k-NN top-1 (k=20, T=0.07) on the other 6,000; the test split is "
             "not read. The learning rate is the base one at batch 256. h and KL are the teacher's entropy and "
             "KL(P_t || P_s) at the last logged step (h = log K = 6.93: uniform, the teacher has not left its "
             "start).", "",
             "| candidate | steps | train minutes | k-NN top-1, validation (%) | h(P_t) | KL(P_t, P_s) |",
             "|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        cells = [r.get("steps", "-"), r.get("train_minutes", "-"), f"{r['knn_top1']:.2f}",
                 *(f"{r[k]:.3f}" if r.get(k) is not None else "-" for k in ("teacher_entropy", "teacher_student_kl"))]
        lines.append(f"| {r['name']} | " + " | ".join(map(str, cells)) + " |")
    lines += ["", f"Best on validation: {best(rec)}, the recipe of every DINO ablation in configs/ablations/.", ""]
    return "\n".join(lines)


def best(rec: dict[str, Any]) -> str:
    """The candidate with the best validation k-NN."""
    return max((r for r in rec["rows"] if r["name"] in CANDIDATES), key=lambda r: r["knn_top1"])["name"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "ablation-screen", help="where the runs go")
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run these candidates, write no table "
                   "(to split the candidates over parallel processes; a last call without --only writes it)")
    args = p.parse_args()
    rows = [run_candidate(name, args.work) for name in args.only or CANDIDATES]
    if args.only:
        return
    rows.insert(0, random_row(args.work / slug(next(iter(CANDIDATES))), args.work))
    rec = {"machine": machine_words(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    (ROOT / "docs" / "ablation_screen.json").write_text(json.dumps(rec, indent=1))
    (ROOT / "docs" / "ablation_screen.md").write_text(markdown(rec))
    print(markdown(rec))


if __name__ == "__main__":
    main()
