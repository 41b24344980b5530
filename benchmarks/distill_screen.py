"""Choose the distillation recipe on a validation split (never the test split): the students of benchmarks/distill.py
(the demo's backbone at width 64, the demo's network as teacher), one factor changed per variant, each trained
for the same minutes on Fashion-MNIST's training images less a held-out sixth (--data.holdout 0.1667) and scored
by k-NN (k=20, T=0.07, their own feature) on those held-out 10,000 images. The teacher saw them during its own
(unlabelled) training, as every variant's student does: the comparison between variants is what counts.

    .venv/bin/python benchmarks/distill_screen.py --teacher runs/demo [--minutes 5] [--only 'NAME;NAME']
    .venv/bin/python benchmarks/distill_screen.py --smoke --teacher T --out DIR --doc FILE   # seconds: the test's

Writes docs/distill_screen.md and .json (finished variants are reused from --out/NAME/summary.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch

import selfsup
from selfsup.config import merge, recipe
from selfsup.machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import student_backbone  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = 0.1667
DEMO_CROPS = {"views": {"global_scale": [0.5, 1.0]}}  # the demo's crops of half the image or more
# the images as k-NN reads them: whole, unflipped, uncoloured, unmixed
PLAIN = {"views": {"global_scale": [1.0, 1.0], "flip": 0.0, "color_jitter": 0.0, "grayscale": 0.0},
         "distill": {"mixup": False}}
SCRATCH = "no teacher: the same student pre-trained from scratch with the demo recipe"


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    return functools.reduce(merge, parts, {})


RANDOM = {"distill": {"student_init": "random"}}  # the first screen's students all started from random weights
SELECT = {"distill": {"student_init": "select"}}  # Xu et al. 2024's weight selection from the teacher
# the student's own SimCLR term beside the distillation, on the demo's two views (its SimCLR jitter and crops)
OWN = merge({"views": recipe("demo")["views"]}, {"distill": {"contrastive_weight": 1.0}})
VARIANTS: dict[str, dict[str, Any]] = {
    "LightlyTrain's recipe (crops 0.14-1, mixup, mse)": RANDOM,
    "crops 0.5-1": merged(RANDOM, DEMO_CROPS),
    "crops 0.5-1, no mixup": merged(RANDOM, DEMO_CROPS, {"distill": {"mixup": False}}),
    "crops 0.5-1, token-grid term only (LightlyTrain's)": merged(RANDOM, DEMO_CROPS,
                                                                 {"distill": {"pooled_weight": 0.0}}),
    "no augmentation, no mixup": merged(RANDOM, PLAIN),
    "crops 0.5-1, cosine loss": merged(RANDOM, DEMO_CROPS, {"distill": {"loss": "cosine"}}),
    SCRATCH: {},
    "crops 0.5-1, student selected from the teacher's weights": merged(SELECT, DEMO_CROPS),
    "crops 0.5-1, student selected from the teacher's weights, lr 2.5e-4": merged(SELECT, DEMO_CROPS,
                                                                               {"optim": {"lr": 2.5e-4}}),
    "the demo's two views, + the student's own SimCLR term": merged(RANDOM, OWN),
    "the demo's two views, + the student's own SimCLR term, no mixup": merged(RANDOM, OWN,
                                                                              {"distill": {"mixup": False}}),
    "the demo's two views, + the student's own SimCLR term, student selected from the teacher's weights":
        merged(SELECT, OWN),
}


def run(name: str, sections: dict[str, Any], teacher: str, minutes: float, width: int, out: Path,
        smoke: bool = False) -> dict[str, Any]:
    done = out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    length = {"epochs": 2 / 37, "batch_size": 32, "minutes": None} if smoke else {"minutes": minutes}
    base = {"data": {"name": "digits" if smoke else "fashion-mnist", "holdout": HOLDOUT},
            "backbone": {**student_backbone(width), "patch_dropout": 0.0}, "optim": length,
            "run": {"out": str(out), "eval_knn": True, "checkpoint_every": 200}}
    resume = (out / "checkpoints" / "last.pt").exists()
    if name == SCRATCH:  # the comparison of the goal: the demo's recipe exactly (its patch dropout too)
        base = merge(base, {"config": recipe("demo"), "backbone": student_backbone(width)})
        summary = selfsup.pretrain(**base, resume=resume, sized=False)
    else:
        summary = selfsup.distill(teacher, **merge(base, sections), resume=resume)
    summary["variant"], summary["date"] = name, dt.date.today().isoformat()
    done.write_text(json.dumps(summary))
    return summary


def earlier(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def table(rows: list[dict[str, Any]], minutes: float, teacher: str) -> str:
    lines = [f"# Distillation recipe screen (validation split, {minutes:g} minutes each)", "",
             f"Written by benchmarks/distill_screen.py on {dt.date.today().isoformat()}; {cpu_name()}, "
             f"{torch.get_num_threads()} threads. Teacher: {teacher}; student: the demo's backbone at width 64. "
             f"k-NN top-1 (k=20, T=0.07, the student's own feature) on the {HOLDOUT:.4g} of the training images "
             "held out (--data.holdout), never the test split. Students not named 'selected' start from random weights "
             "(--distill.student-init random); 'selected' ones from Xu et al. 2024's selection of the teacher's "
             "weights.", "",
             "| variant | k-NN top-1 (validation) | steps | images/s | date |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r.get("knn_top1", 0)):
        lines.append(f"| {r['variant']} | {r.get('knn_top1', float('nan')):.2f} | {r['steps']} | "
                     f"{r['images_per_s']:.0f} | {r.get('date', '-')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="runs/demo")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--only", default="", help="variant names separated by ';' (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "distill-screen")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "distill_screen.md")
    p.add_argument("--smoke", action="store_true", help="two variants of two steps on digits, for the test")
    args = p.parse_args(argv)
    only = [n.strip() for n in args.only.split(";") if n.strip()]
    names = [n for n in VARIANTS if not only or n in only][: 2 if args.smoke else None]
    rows = [run(n, VARIANTS[n], args.teacher, args.minutes, args.width, args.out / str(i), args.smoke)
            for i, n in enumerate(VARIANTS) if n in names]
    if not args.smoke:  # rows of earlier invocations that this one did not run stay in the table
        rows += [r for r in earlier(args.doc.with_suffix(".json")) if r["variant"] not in names]
    text = table(rows, args.minutes, args.teacher)
    args.doc.write_text(text)
    args.doc.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return rows


if __name__ == "__main__":
    main()
