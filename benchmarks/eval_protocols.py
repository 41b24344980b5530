"""Run every evaluation protocol on pre-trained runs, a supervised baseline and raw pixels; write
docs/evaluation.md (one table: a row per protocol metric, a column per run) and its bar plot.

    .venv/bin/python benchmarks/eval_protocols.py                       # runs/demo on Fashion-MNIST
    .venv/bin/python benchmarks/eval_protocols.py runs/dino runs/simclr --budget-minutes 5
    .venv/bin/python benchmarks/eval_protocols.py RUN --data D.npz --transfer-data E.npz --quick --out /tmp/e.md

For each run: knn, linear, fewshot (1% and 10%, linear and fine-tuning), finetune, pseudolabel on --data, and
transfer on --transfer-data. The `supervised` protocol on the first run trains the same architecture from
random initialisation with all labels and saves it as a run, which then gets the frozen-feature protocols
too (its few-shot rows are not few-shot: it has seen every label). Raw pixels get knn, linear and the
few-shot linear rows. Every result is also in RUN/eval/PROTOCOL.json (`selfsup report` reads them).

Cost on a 2-core CPU with the demo's vit-cpu on Fashion-MNIST: features ~20 s per run and split (cached
afterwards), knn + linear + few-shot linear ~1 min, each fine-tuning run (fewshot: 6, finetune,
pseudolabel: 2, supervised) up to --budget-minutes. --quick shrinks every protocol for a smoke test.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.eval.context import build_context, pixels_context
from selfsup.eval.protocols import PROTOCOLS, run_protocol
from selfsup.eval.record import write_record
from selfsup.eval.report import bar_plot, cells, columns, load_run
from selfsup.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
FROZEN = ("knn", "linear", "fewshot", "transfer")
TRAINED = ("finetune", "pseudolabel")
PIXELS = ("knn", "linear", "fewshot")
QUICK = {"linear": {"epochs": 5}, "transfer": {"epochs": 5},
         "fewshot": {"subsets": 1, "epochs": 5, "finetune_epochs": 0.5},
         "finetune": {"epochs": 0.2}, "pseudolabel": {"epochs": 0.2}, "supervised": {"epochs": 0.2}}
BUDGET_FIELDS = {"fewshot": "finetune_minutes", "finetune": "minutes", "pseudolabel": "minutes",
                 "supervised": "minutes"}


def options(name: str, quick: bool, budget: float | None) -> Any:
    """The protocol's default options, shrunk by --quick, with the fine-tuning time budget where it has one."""
    cls = PROTOCOLS[name].options
    fields = {f.name for f in dataclasses.fields(cls)}
    values = dict(QUICK.get(name, {})) if quick else {}
    if budget is not None and BUDGET_FIELDS.get(name) in fields:
        values[BUDGET_FIELDS[name]] = budget
    return cls(**{k: v for k, v in values.items() if k in fields})


def evaluate(run: Path, protocols: tuple[str, ...], args: argparse.Namespace) -> None:
    ctx = build_context(run, args.data, device=args.device)
    for name in protocols:
        if name not in PROTOCOLS:
            continue
        data = args.transfer_data if name == "transfer" else args.data
        target = ctx if data == args.data else build_context(run, data, device=args.device)
        print(f"\n== {run}: {name}", flush=True)
        run_protocol(name, target.with_options(options(name, args.quick, args.budget_minutes)))


def supervised_baseline(run: Path, args: argparse.Namespace) -> Path | None:
    """Train the supervised baseline from the first run's architecture; its run directory (None if absent)."""
    if "supervised" not in PROTOCOLS:
        return None
    print(f"\n== {run}: supervised baseline", flush=True)
    ctx = build_context(run, args.data, device=args.device)
    opts = options("supervised", args.quick, args.budget_minutes)
    record = run_protocol("supervised", ctx.with_options(opts), write=False)
    baseline = Path(record["settings"]["run"])
    write_record(record, baseline)  # its own column: "supervised top1" is the trained network with its head
    return baseline


def raw_pixels(args: argparse.Namespace) -> Path:
    out = Path(args.pixels_dir or ROOT / "runs" / f"pixels-{Path(args.data).stem}")
    for name in PIXELS:
        print(f"\n== raw pixels: {name}", flush=True)
        ctx = pixels_context(out, args.data, options(name, args.quick, None))
        run_protocol(name, ctx)
    return out


def table(run_dirs: list[Path], labels: list[str]) -> str:
    """Rows: protocol metrics (mean ± std for few-shot); columns: runs."""
    runs = [load_run(d, label) for d, label in zip(run_dirs, labels, strict=True)]
    per_run = [cells(r) for r in runs]
    lines = ["| protocol (top-1 %) | " + " | ".join(labels) + " |", "|---" * (len(runs) + 1) + "|"]
    for col in columns(runs):
        row = []
        for values in per_run:
            value, std = values.get(col, (None, None))
            row.append("-" if value is None else f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else ""))
        lines.append(f"| {col} | " + " | ".join(row) + " |")
    return "\n".join(lines)



def document(run_dirs: list[Path], labels: list[str], args: argparse.Namespace, minutes: float) -> str:
    plot = args.out.with_suffix(".png")
    bar_plot([load_run(d, label) for d, label in zip(run_dirs, labels, strict=True)], plot)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else cpu_name()
    return "\n".join([
        "# Evaluation protocols", "",
        f"Written by `benchmarks/eval_protocols.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}, "
        f"{device}, torch {torch.__version__}; {minutes:.1f} min in all. Data: {args.data} (transfer: "
        f"{args.transfer_data})." + (" **--quick: shrunk protocols, not comparable numbers.**" if args.quick else ""),
        "", "Top-1 accuracy (%) on the test split. k-NN: k=20, T=0.07 (DINO). linear: BatchNorm without affine + "
        "linear layer on frozen features (MAE), SGD + cosine for 100 epochs (DINO), learning rate chosen on a "
        "stratified 10% of train. fewshot: the same probe, and fine-tuning, on 1% / 10% of the labels drawn "
        "per class, mean ± std over 3 subsets. finetune / pseudolabel / supervised: MAE's fine-tuning recipe "
        f"(AdamW, warm-up + cosine, layer decay for ViTs, drop path, label smoothing), at most "
        f"{args.budget_minutes} min per training run. Settings of each number: RUN/eval/PROTOCOL.json.", "",
        table(run_dirs, labels), "", f"![top-1 by protocol]({plot.name})", ""])


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, default=[ROOT / "runs" / "demo"], help="pre-trained run dirs")
    p.add_argument("--data", default="fashion-mnist", help="evaluation data")
    p.add_argument("--transfer-data", default="digits", help="the other dataset of the transfer protocol")
    p.add_argument("--budget-minutes", type=float, default=5.0, help="wall-clock cap of each fine-tuning run")
    p.add_argument("--no-supervised", action="store_true", help="skip the supervised baseline")
    p.add_argument("--pixels-dir", type=Path, help="where the raw-pixel records go (default runs/pixels-DATA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny protocol settings: a smoke test of the script")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "evaluation.md")
    return p.parse_args()


def main() -> None:
    args = parse()
    start = time.time()
    runs = [Path(r) for r in args.runs]
    baseline = None if args.no_supervised else supervised_baseline(runs[0], args)
    for run in runs:
        evaluate(run, FROZEN + TRAINED, args)
    if baseline is not None:
        evaluate(baseline, FROZEN, args)
    pixels = raw_pixels(args)
    run_dirs = runs + ([baseline] if baseline else []) + [pixels]
    labels = [r.name for r in runs] + (["supervised (random init)"] if baseline else []) + ["raw pixels"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document(run_dirs, labels, args, (time.time() - start) / 60))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
