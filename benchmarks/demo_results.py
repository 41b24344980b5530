"""Run `selfsup demo --json` and write its table, time and machine into README.md (between markers).

    .venv/bin/python benchmarks/demo_results.py [extra demo options...]

The README's demo numbers are only ever written by this script.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
FLOORS = {"fashion-mnist": "84.6% raw pixels (brief's floor)", "digits": "96.9% raw pixels (brief's floor)"}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def run_demo(extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "selfsup.cli", "demo", "--json", "--no-progress", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(r: dict, extra: list[str]) -> str:
    return "\n".join([
        f"`selfsup demo {' '.join(extra)}`".replace(" `", "`") + f" on {r['dataset']}, measured "
        f"{time.strftime('%Y-%m-%d')} on {cpu_name()} ({torch.get_num_threads()} threads), torch "
        f"{torch.__version__}: {r['steps']} steps ({r['epochs']} epochs, {r['images_per_s']:.0f} images/s) in "
        f"{r['train_minutes']:.1f} min of training, **{r['minutes']:.1f} min** wall-clock in all.",
        "",
        "| features (k-NN, k=20, T=0.07, test split) | top-1 (%) |",
        "|---|---|",
        f"| DINO teacher, learned | {r['knn_learned']:.2f} |",
        f"| same network, random init | {r['knn_random']:.2f} |",
        f"| raw pixels | {r['knn_pixels']:.2f} |",
    ])


def main() -> None:
    extra = sys.argv[1:]
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
