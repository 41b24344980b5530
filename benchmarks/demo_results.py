"""Run `selfsup demo --json` and write its table, time and machine into README.md (between markers).

    .venv/bin/python benchmarks/demo_results.py [extra demo options...]
    .venv/bin/python benchmarks/demo_results.py --from-run DIR   # a finished `selfsup demo` run (DIR/demo.json)

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
FLOORS = {"fashion-mnist": "the brief's floor: 84.6%", "digits": "the brief's floor: 96.9%"}


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
        f"`{' '.join(['selfsup demo', *extra])}`" + f" on {r['dataset']}, measured "
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


def curve(out: Path) -> list[tuple[int, float, float]]:
    """(step, training minutes, k-NN top-1) of every k-NN evaluation the demo run logged."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_minutes"], r["knn_top1"]) for r in rows if "knn_top1" in r]


def curve_doc(r: dict, extra: list[str]) -> str:
    lines = ["# The demo's accuracy-versus-minutes curve", "",
             f"Written by `{' '.join(['benchmarks/demo_results.py', *extra])}`"
             + f" on {time.strftime('%Y-%m-%d')}, {cpu_name()}. k-NN top-1 (k=20, T=0.07) of the DINO "
             "teacher's CLS token on the "
             f"{r['dataset']} test split, evaluated during the demo run (`run.knn_every`) and at its end.", "",
             "| step | training minutes | k-NN top-1 (%) |", "|---|---|---|"]
    lines += [f"| {s} | {m:.1f} | {a:.2f} |" for s, m, a in curve(ROOT / r["out"])]
    lines += ["", f"Same network at random initialisation: {r['knn_random']:.2f}%; raw pixels: "
              f"{r['knn_pixels']:.2f}% ({FLOORS.get(r['dataset'], '')})."]
    return "\n".join(lines) + "\n"


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
    (ROOT / "docs" / "demo.md").write_text(curve_doc(result, extra))


if __name__ == "__main__":
    main()
