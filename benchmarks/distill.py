"""Distil the demo's network into a half-width student, beside the same student pre-trained from scratch with the
demo recipe for the same minutes, and write docs/distill.md: k-NN (k=20, T=0.07, each network's own feature: the
demo's `patches`), training images/s, FLOPs per image (one forward), the date, the CPU and its threads.

    .venv/bin/python benchmarks/distill.py --teacher runs/demo --minutes 5      # `selfsup demo` wrote runs/demo
    .venv/bin/python benchmarks/distill.py --teacher runs/demo --seeds 0 1 2   # each seed: both students again
    .venv/bin/python benchmarks/distill.py --smoke --teacher T --out DIR --doc FILE   # seconds: the test's run

The goal (issue 31): the student within 2 k-NN points of its teacher, and above scratch, in 5 minutes on CPU.
Both students take the demo's backbone options with --backbone.width 64; distillation runs without patch
dropout (it regresses the whole token grid). With several --seeds, each seed trains both students again (its own
initialisation, views and batches: seed 0's runs in --out, seed n's in --out/seedN); the table gives the mean and
each seed's value, and says on how many seeds the goal holds. Finished runs are reused: rerun with the same --out
to resume.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

import selfsup
from selfsup.config import recipe
from selfsup.machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flop_count import count_flops  # noqa: E402  (a sibling script, not a package)

ROOT = Path(__file__).resolve().parents[1]


# The distillation recipe distill_screen.py chose on the validation split (docs/distill_screen.md, 5 min each): the
# student starts from a selection of the teacher's weights and learns its own SimCLR term beside the regression, on
# the demo's two views (86.43 there, against 86.05 for the same student from scratch and 85.75-86.01 for
# distillation alone).
STUDENT_RECIPE: dict[str, Any] = {"views": recipe("demo")["views"],
                                  "distill": {"student_init": "select", "contrastive_weight": 1.0}}


def student_backbone(width: int) -> dict[str, Any]:
    """The demo's backbone options at another width."""
    return {**recipe("demo")["backbone"], "width": width}


def seed_out(out: Path, seed: int) -> Path:
    """Where one seed's two runs go: seed 0's in --out itself, seed n's in --out/seed{n}."""
    return out if seed == 0 else out / f"seed{seed}"


def plans(teacher: str, data: str, minutes: float | None, width: int, out: Path, smoke: bool, seed: int = 0
          ) -> dict[str, dict[str, Any]]:
    """The two runs of one seed: the keyword arguments of selfsup.distill and selfsup.pretrain."""
    length = {"epochs": 2 / 44, "batch_size": 32, "minutes": None} if smoke else {"minutes": minutes}
    run = {"eval_knn": False, "checkpoint_every": 200, "seed": seed}
    distill = {"teacher": teacher, "data": {"name": data}, **STUDENT_RECIPE,
               "backbone": {**student_backbone(width), "patch_dropout": 0.0}, "optim": length,
               "run": {**run, "out": str(out / "student")}}
    scratch = {"config": recipe("demo"), "data": {"name": data}, "backbone": student_backbone(width),
               "optim": length, "run": {**run, "out": str(out / "scratch")}}
    return {"student": distill, "scratch": scratch}


def train(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume, or reuse) one training run; its summary is kept as OUT/summary.json."""
    out = Path(kwargs["run"]["out"])
    done = out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    resume = (out / "checkpoints" / "last.pt").exists()
    if name == "scratch":  # the demo's recipe exactly, not sized
        summary = selfsup.pretrain(**kwargs, resume=resume, progress=False, sized=False)
    else:
        summary = selfsup.distill(**kwargs, resume=resume, progress=False)
    done.write_text(json.dumps(summary))
    return summary


def forward_flops(run: Path) -> int:
    """FLOPs of one image through the run's backbone at its own size (FlopCounterMode's count)."""
    model, spec = selfsup.load_backbone(run, return_spec=True)
    x = torch.zeros(1, spec.in_chans, spec.img_size, spec.img_size)
    with torch.no_grad():
        return count_flops(lambda: model(x))


def knn_top1(run: Path, data: str) -> float:
    knn = selfsup.evaluate(run, "knn", data, device="cpu", write=False, k=[20], temperature=0.07)
    return round(knn["numbers"]["top1"], 2)


def row(name: str, runs: list[Path], data: str, images_per_s: list[float | None]) -> dict[str, Any]:
    """One network's row over its runs (one per seed): the mean k-NN and images/s, and each run's k-NN."""
    seeds = [knn_top1(run, data) for run in runs]
    spec = selfsup.load_backbone(runs[0], return_spec=True)[1]
    ips = None if None in images_per_s else round(statistics.fmean(images_per_s), 1)
    return {"row": name, "run": str(runs[0]), "knn_top1": round(statistics.fmean(seeds), 2), "knn_seeds": seeds,
            "width": spec.width, "feature": spec.feature, "images_per_s": ips,
            "gflops_per_image": round(forward_flops(runs[0]) / 1e9, 4)}


def verdict(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    """Issue 31's goal seed by seed: the distilled student within 2 points of the teacher and above scratch."""
    teacher, student, scratch = (r["knn_top1"] for r in rows)
    gaps = [d - s for d, s in zip(rows[1]["knn_seeds"], rows[2]["knn_seeds"], strict=True)]
    near = sum(teacher - d <= 2 for d in rows[1]["knn_seeds"])
    return (f"Over seeds {', '.join(map(str, seeds))}: the distilled student is within 2 points of its teacher on "
            f"{near} of {len(seeds)} (mean {student - teacher:+.2f}) and above the same student from scratch on "
            f"{sum(g > 0 for g in gaps)} of {len(seeds)}, by {statistics.fmean(gaps):+.2f} points on average "
            f"({', '.join(f'{g:+.2f}' for g in gaps)}).")


def table(rows: list[dict[str, Any]], minutes: float | None, data: str, seeds: list[int]) -> str:
    when = dt.date.today().isoformat()
    lines = [f"# Distillation into a half-width student ({data}, {minutes} minutes of training each)", "",
             f"Written by benchmarks/distill.py on {when}; {cpu_name()}, {torch.get_num_threads()} threads. k-NN: "
             "k=20, T=0.07 on the test split, each network's own feature. images/s: training images per second "
             "(the teacher's: those of its own run). FLOPs: one forward of one image (matmuls and convolutions, "
             "torch's FlopCounterMode). Students: the mean over the seeds, each seed's value beside it (the seed "
             "sets the student's initialisation, views and batches; the teacher is one run).", "",
             "| network | k-NN top-1 | per seed | width | feature | training images/s | GFLOPs / image |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}"
        per_seed = ", ".join(f"{v:.2f}" for v in r["knn_seeds"])
        lines.append(f"| {r['row']} | {r['knn_top1']:.2f} | {per_seed} | {r['width'] or 'preset'} | {r['feature']} "
                     f"| {ips} | {r['gflops_per_image']:.4f} |")
    return "\n".join([*lines, "", verdict(rows, seeds)]) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="runs/demo", help="the teacher's run directory (the demo's)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--minutes", type=float, default=5.0, help="training minutes of each student")
    p.add_argument("--width", type=int, default=64, help="the students' ViT width (the demo's is 128)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "distill-bench")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "distill.md")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="train both students once per seed (each seed costs twice --minutes)")
    p.add_argument("--smoke", action="store_true", help="two steps of batch 32 each, for the test (seconds)")
    args = p.parse_args(argv)
    data = "digits" if args.smoke else args.data
    summaries = {}
    for seed in args.seeds:
        runs = plans(args.teacher, data, args.minutes, args.width, seed_out(args.out, seed), args.smoke, seed)
        summaries[seed] = {name: train(name, kwargs) for name, kwargs in runs.items()}
    teacher_ips = None
    metrics = Path(args.teacher) / "demo.json"
    if metrics.exists():
        teacher_ips = json.loads(metrics.read_text()).get("images_per_s")
    rows = [row("teacher (the demo)", [Path(args.teacher)], data, [teacher_ips])]
    rows += [row(label, [seed_out(args.out, seed) / name for seed in args.seeds], data,
                 [summaries[seed][name]["images_per_s"] for seed in args.seeds])
             for name, label in (("student", "student, distilled"), ("scratch", "student, from scratch (demo recipe)"))]
    text = table(rows, None if args.smoke else args.minutes, data, args.seeds)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(text)
    (args.doc.with_suffix(".json")).write_text(json.dumps(rows, indent=1))
    print(text)
    return rows


if __name__ == "__main__":
    main()
