"""Run `selfsup demo --json` and write its table, time and machine into README.md (between markers).

The demo reads the test split once, at its end; its accuracy-versus-minutes curve is measured on a
validation split by `benchmarks/demo_sweep.py --curve` (docs/demo_sweep.md), never on the test split.

    .venv/bin/python benchmarks/demo_results.py [extra demo options...]
    .venv/bin/python benchmarks/demo_results.py --from-run DIR   # a finished `selfsup demo` run (DIR/demo.json)

The README's demo numbers are only ever written by this script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from selfsup.config import recipe
from selfsup.machine import machine_words

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_sweep import crossing, load_records, of_demo_recipe  # noqa: E402  (a sibling script, not a package)

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
FLOORS = {"fashion-mnist": "the brief's floor: 84.6%", "digits": "the brief's floor: 96.9%"}



def run_demo(extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "selfsup.cli", "demo", "--json", "--no-progress", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(r: dict, extra: list[str]) -> str:
    return "\n".join([
        f"`{' '.join(['selfsup demo', *extra])}`" + f" on {r['dataset']}, measured "
        f"{time.strftime('%Y-%m-%d')} on {r.get('machine') or machine_words()}, torch "
        f"{torch.__version__}: {r['method']} on {r['backbone']}, {r['steps']} steps ({r['epochs']} epochs, "
        f"{r['images_per_s']:.0f} images/s) in {r['train_minutes']:.1f} min of training, **{r['minutes']:.1f} "
        "min** wall-clock in all.",
        "",
        f"| features (k-NN, k=20, T=0.07, test split; network feature: {r['feature']}) | top-1 (%) |",
        "|---|---|",
        f"| {r['method']}, learned | {r['knn_learned']:.2f} |",
        f"| same network, random init | {r['knn_random']:.2f} |",
        f"| raw pixels ({FLOORS.get(r['dataset'], '')}) | {r['knn_pixels']:.2f} |",
        "",
        validation_summary(load_records()),
    ])


def validation_summary(records: list[dict]) -> str:
    """What the recipe reached on the validation split (docs/demo_sweep.jsonl), at the demo's budget and
    on its longest curve, against raw pixels on the same split."""
    pixels = next((r["val_top1"] for r in records if r["variant"] == "raw pixels"), None)
    runs = [r for r in records if of_demo_recipe(r) and r.get("threads") == torch.get_num_threads()]
    at_budget = [r for r in runs if r["minutes_budget"] == recipe("demo")["optim"]["minutes"]]
    if pixels is None or not at_budget:
        return "No validation runs of this recipe at its budget are recorded yet (benchmarks/demo_sweep.py)."
    budget = at_budget[-1]  # the latest
    longest = max(runs, key=lambda r: r["minutes_budget"])
    text = (f"On the validation split (10,000 held-out training images, [docs/demo_sweep.md](docs/demo_sweep.md), "
            f"{budget['cpu']}, {budget['threads']} threads) the recipe reached {budget['val_top1']:.2f}% in "
            f"{budget['train_minutes']} min of training ({budget['epochs']} epochs) against {pixels:.2f}% for "
            "raw pixels.")
    if longest is not budget and "curve" in longest:
        curve = [*longest["curve"], (longest["train_minutes"], longest["val_top1"])]
        text += (f" Planned for {longest['minutes_budget']:g} minutes it ends at {longest['val_top1']:.2f}% "
                 f"({longest['epochs']} epochs). {crossing(curve, pixels)} (![curve](docs/demo_curve.png))")
    return text


def main() -> None:
    extra = sys.argv[1:]
    if extra[:1] == ["--from-run"]:
        run_dir = Path(extra[1]).resolve()
        result = json.loads((run_dir / "demo.json").read_text())
        result["out"] = str(run_dir)
        extra = []
    else:
        result = run_demo(extra)
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(result, extra)}\n{END}{tail}")
    print(table(result, extra))
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "demo_result.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
