"""The sized recipe on photos: `selfsup pretrain --data PHOTOS --minutes 3` with no other flag, measured.

    .venv/bin/python benchmarks/sized_recipe.py [--minutes 3] [--images 2000] [--side 256] [--out DIR] [--smoke]
    .venv/bin/python benchmarks/sized_recipe.py --memory     # the memory estimate against measured peak RSS

Generates `--images` RGB JPEGs of `--side` px (plus a fifth as many test images) from scikit-image's bundled
photos (the cluttered dataset's backgrounds): random crops of 25-90% of a photo's shorter side, flips and
colour jitter, in an ImageFolder layout whose class is the source photo (ROOT/train/<photo>/, ROOT/test/<photo>/),
so that the run's k-NN has labels; chance is one over the photos. Runs the command in a subprocess and records
the wall time against the budget, the epochs reached, the peak RSS of the process and its workers (polled from
/proc) against the run's own estimate (its `memory:` line), and the k-NN against chance; writes
docs/sized_recipe.md with the date, CPU and threads. --smoke (a test runs it): 60 images of 64 px, a few
seconds' budget, nothing written unless --report is given. --memory runs a few steps of small configurations and
prints estimate against measured peak.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from selfsup.config import load_yaml
from selfsup.data.cluttered import PHOTOS, backgrounds
from selfsup.machine import cpu_name, usable_cores

ROOT = Path(__file__).resolve().parents[1]
CROP = (0.25, 0.9)  # crop side / the photo's shorter side
JITTER = 0.3  # brightness, contrast and saturation factors in [1 - JITTER, 1 + JITTER]
GOAL_EPOCHS = 2


def make_photos(root: Path, count: int, side: int, seed: int = 0) -> int:
    """`count` training and count // 5 test JPEGs under root/{train,test}/<photo>/; the number of classes."""
    rng = np.random.default_rng(seed)
    photos = backgrounds()
    names = PHOTOS[: len(photos)]
    for split, n in (("train", count), ("test", max(len(photos), count // 5))):
        for i in range(n):
            k = i % len(photos)
            img = photos[k]
            h, w = img.shape[:2]
            s = int(min(h, w) * rng.uniform(*CROP))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            im = Image.fromarray(img[y : y + s, x : x + s]).resize((side, side), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                im = enhance(im).enhance(rng.uniform(1 - JITTER, 1 + JITTER))
            folder = root / split / names[k]
            folder.mkdir(parents=True, exist_ok=True)
            im.save(folder / f"{i:06d}.jpg", quality=90)
    return len(photos)


def tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except (OSError, ValueError):
            continue
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(int(status.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run(argv: list[str]) -> dict:
    """`selfsup ARGV` in a subprocess: its output, wall seconds and peak RSS of its process tree."""
    cmd = [sys.executable, "-m", "selfsup.cli", *argv]
    t0, peak = time.time(), 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        lines: list[str] = []
        import threading

        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        while p.poll() is None:
            peak = max(peak, tree_rss(p.pid))
            time.sleep(0.25)
        reader.join()
    return {"rc": p.returncode, "lines": [x.rstrip("\n") for x in lines], "wall_s": time.time() - t0,
            "peak_rss_gib": peak / 1024**3}


def estimated_gib(lines: list[str]) -> float | None:
    """The run's own peak estimate from its `memory: peak about X GiB` line."""
    for line in lines:
        m = re.match(r"memory: peak about (?:GPU [\d.]+ GiB \+ RAM )?([\d.]+) GiB", line)
        if m:
            return float(m.group(1))
    return None


def epochs_reached(out: Path, steps: int, images: int) -> float:
    """Epochs of the `steps` the run trained: steps over the steps an epoch of `images` takes at its batch
    (config.yaml; the last partial batch dropped). Not from metrics.jsonl: a run the deadline cut between two
    log steps logged none of its last steps."""
    batch = load_yaml(out / "config.yaml")["optim"]["batch_size"]
    return steps / max(images // batch, 1)


def benchmark(args: argparse.Namespace) -> dict:
    data, out = args.out / "photos", args.out / "run"
    classes = make_photos(data, args.images, args.side)
    r = run(["pretrain", "--data", str(data), "--minutes", str(args.minutes), "--out", str(out), "--no-progress",
             "--json", *args.extra])
    if r["rc"] != 0:
        raise SystemExit("the run failed:\n" + "\n".join(r["lines"][-20:]))
    summary = json.loads(r["lines"][-1])
    epochs = epochs_reached(out, summary["steps"], args.images)
    return {**r, "summary": summary, "epochs": epochs, "chance": 100 / classes, "classes": classes,
            "estimate_gib": estimated_gib(r["lines"]), "config": (out / "config.yaml").read_text()}


def report(args: argparse.Namespace, r: dict) -> str:
    s = r["summary"]
    chosen = [x for x in r["lines"] if not x.startswith(("{", "k-NN"))][:8]
    goal = (f"{'met' if r['epochs'] >= GOAL_EPOCHS and s['minutes'] <= args.minutes * 1.03 else 'NOT met'}: "
            f">= {GOAL_EPOCHS} epochs, training within its budget")
    return "\n".join([
        "# The sized recipe on photos", "",
        "Written by `benchmarks/sized_recipe.py` (see its docstring); do not edit by hand.", "",
        f"Command: `selfsup pretrain --data PHOTOS --minutes {args.minutes:g}` with no other flag, on "
        f"{args.images:,} RGB JPEGs of {args.side} px cut from {r['classes']} scikit-image photos (the class is the "
        f"photo; {r['classes']} classes, chance {r['chance']:.1f}%).  ",
        f"Measured: {cpu_name()}, {usable_cores()} threads, "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", "",
        "| budget (min) | training (min) | wall, whole command (min) | epochs | images/s | peak RSS (GiB) | "
        "estimated peak (GiB) | k-NN top-1 (%) | chance (%) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.minutes:g} | {s['minutes']:.2f} | {r['wall_s'] / 60:.2f} | {r['epochs']:.2f} | "
        f"{s['images_per_s']:.0f} | {r['peak_rss_gib']:.2f} | {r['estimate_gib'] or float('nan'):.2f} | "
        f"{s.get('knn_top1', float('nan')):.2f} | {r['chance']:.1f} |", "",
        f"Goal {goal}; the wall time adds the setup, the calibration and the k-NN evaluation.", "",
        "What the run chose and said:", "", "```", *chosen, "```", ""])


# -- the memory estimate against measured peaks -----------------------------------------------------------
MEMORY_CASES = {  # name -> extra flags of a short run (a few steps) on the photos
    "photos, batch 32": ["--batch-size", "32"],
    "photos, batch 128": ["--batch-size", "128"],
    "photos, 128-px crops, batch 64": ["--views.global-size", "128", "--batch-size", "64"],
}


def memory(args: argparse.Namespace) -> list[tuple[str, float | None, float]]:
    data = args.out / "photos"
    if not data.exists():
        make_photos(data, args.images, args.side)
    rows = []
    for i, (name, extra) in enumerate(MEMORY_CASES.items()):
        r = run(["pretrain", "--data", str(data), "--epochs", "0.2", "--out", str(args.out / f"memory-{i}"),
                 "--no-progress", "--run.eval-knn", "false", *extra])
        rows.append((name, estimated_gib(r["lines"]), r["peak_rss_gib"]))
        print(f"{name}: estimated {rows[-1][1]} GiB, measured peak RSS {rows[-1][2]:.2f} GiB", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("runs/sized_recipe"))
    p.add_argument("--report", type=Path, help="where to write the table (default docs/sized_recipe.md; none with "
                   "--smoke)")
    p.add_argument("--smoke", action="store_true", help="60 images of 64 px, 0.05 min: seconds")
    p.add_argument("--memory", action="store_true", help="estimate against measured peak RSS, small runs")
    p.add_argument("extra", nargs="*", help="further flags for the run (none for the benchmark proper)")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.side, args.minutes = 60, 64, 0.05
    if args.memory:
        return {"memory": memory(args)}
    r = benchmark(args)
    text = report(args, r)
    print(text)
    target = args.report or (None if args.smoke else ROOT / "docs" / "sized_recipe.md")
    if target:
        target.write_text(text)
    return r


if __name__ == "__main__":
    main()
