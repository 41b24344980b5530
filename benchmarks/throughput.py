"""Images/s and achieved GFLOP/s of one training step, split into phases, with a per-op profile.

    .venv/bin/python benchmarks/throughput.py [--device cpu] [--steps N] [--warmup N] [--batch-vits 16]
                                              [--threads N] [--cases demo,dino-28,vits] [--quick]
                                              [--profile-case demo] [--no-profile] [--out FILE]

Cases (random uint8 images, fp32, no Fabric wrapper):
  (a) demo     the `demo` preset as it is now (configs/demo.yaml, whatever method it names; SimCLR on vit-cpu,
               patch 7, 2 views of 1x28x28, batch 256): the library's step only, no reference row.
  (b) dino-28  the demo preset from when the demo was DINO (DINO_28 below: vit-cpu, patch 7, 2x28 + 4x14
               crops, a 1024-wide head with 1024 prototypes, batch 256), on 1x28x28.
  (c) vits     ViT-S/16: 2x224 + 10x96 crops of 3x224x224 images, out_dim 65536 as in the paper, --batch-vits.
The DINO cases time the library's DINO step ("optimised": SDPA attention, views grouped by size, einsum loss)
and a plain reference built here on top of it ("reference": explicit-softmax attention, every view through
backbone and head on its own, the loss as a double loop of cross-entropies), after checking that both give
the same loss on the same views; their head's last layer is trained (as after DINO's first epoch).
A step is split into views (MultiCropViews), forward (the method's forward and loss, without the
diagnostics that the engine computes on logging steps only), backward, and optimiser (the method's
after-backward hook, per-parameter clipping, the optimiser that `optimizer_for` builds from the case's
options, zero_grad, the method's after-step hook: centre, EMA), as in `selfsup.engine.pretrain.optimization_step`.

Columns: mean milliseconds per phase, images/s, speed-up (images/s over the case's reference row; "-" without
one), then the FLOPs of one step's forward+backward as `torch.utils.flop_counter.FlopCounterMode` counts them
(matmuls, convolutions and attention; elementwise ops, norms and softmax are not counted; counted once,
untimed, with the CPU flash-attention kernel added to its formulas), the GFLOP/s they make over the measured
forward+backward time, a matmul peak measured in the same run with the same threads (median of fp32
1024x1024 @ 1024x1024 products) and the step's share of that peak.
The profile (--profile-case, default demo; --no-profile to skip) runs whole steps of that case under
`torch.profiler` after warm-up and lists the ops with the most self CPU time: milliseconds per step, the share
of the profiled step's wall time, and GFLOP/s over the op's self time where the profiler counts the op's
FLOPs (matmuls, convolutions, elementwise add/mul); the last row is what the listed ops leave of the step
(other ops, autograd and Python).
A full run writes its tables to --out (default docs/throughput.md); --quick (tiny sizes, seconds) writes
nothing unless --out is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from selfsup.config import PretrainConfig, build_config, merge, recipe
from selfsup.data.views import MultiCropViews, channel_stats
from selfsup.engine.build import build_method, resolve_sizes
from selfsup.engine.optim import apply_schedules, clip_gradients, optimizer_for
from selfsup.machine import cpu_name
from selfsup.methods import Method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flop_count import PEAK_REPS, PEAK_SIZE, Sync, matmul_peak, step_flops  # noqa: E402  (sibling scripts)
from reference_dino import TOLERANCE, build_reference, check_same_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("views", "forward", "backward", "optimiser")
TRAIN_LAST_LAYER = {"dino": {"freeze_last_layer": 0.0}}
# The demo preset while the demo was DINO (configs/demo.yaml up to commit f654754); its data and run sections,
# which nothing here reads, are left out.
DINO_28 = {"method": "dino", "backbone": {"name": "vit-cpu", "patch_size": 7, "drop_path": 0.0},
           "views": {"global_size": 28, "local_size": 14, "n_local": 4, "global_scale": [0.3, 1.0],
                     "local_scale": [0.1, 0.4], "color_jitter": 0.5, "solarize": 0.0},
           "optim": {"minutes": 11.5, "batch_size": 256, "lr": 0.001, "warmup_epochs": 0.3, "weight_decay": 0.04,
                     "weight_decay_end": 0.4},
           "dino": {"out_dim": 1024, "hidden_dim": 1024, "momentum_teacher": 0.99, "freeze_last_layer": 0.1}}
VITS = {"method": "dino", "backbone": {"name": "vit-small", "patch_size": 16, "drop_path": 0.1},
        "views": {"global_size": 224, "local_size": 96, "n_local": 10}, "dino": {"out_dim": 65536}}
QUICK_VITS = {"backbone": {"name": "vit-tiny"}, "views": {"global_size": 32, "local_size": 16, "n_local": 2},
              "dino": {"out_dim": 1024, "hidden_dim": 256}}
PROFILE_TOP = 12  # ops listed by the profile


# -- cases ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    cfg: PretrainConfig
    channels: int
    image_size: int
    steps: int
    reference: bool  # time the plain reference too (DINO only)

    @property
    def batch(self) -> int:
        return self.cfg.optim.batch_size

    @property
    def crops(self) -> str:
        v = self.cfg.views
        return f"{v.n_global}x{v.global_size}" + (f" + {v.n_local}x{v.local_size}" if v.n_local else "")


def demo_case(args: argparse.Namespace) -> Case:
    raw = recipe("demo")
    raw = merge(raw, {"optim": {"batch_size": 8 if args.quick else 256},
                      **(TRAIN_LAST_LAYER if raw.get("method") == "dino" else {})})
    cfg = resolve_sizes(build_config(raw, "demo preset"), 28)
    return Case("demo", cfg, 1, 28, args.steps or (1 if args.quick else 5), reference=False)


def dino28_case(args: argparse.Namespace) -> Case:
    raw = merge(DINO_28, {"optim": {"batch_size": 8 if args.quick else 256}, **TRAIN_LAST_LAYER})
    cfg = resolve_sizes(build_config(raw, "dino-28 case"), 28)
    return Case("dino-28", cfg, 1, 28, args.steps or (1 if args.quick else 5), reference=True)


def vits_case(args: argparse.Namespace) -> Case:
    raw = merge(VITS, QUICK_VITS) if args.quick else VITS
    raw = merge(raw, {"optim": {"batch_size": 4 if args.quick else args.batch_vits}, **TRAIN_LAST_LAYER})
    size = raw["views"]["global_size"]
    cfg = resolve_sizes(build_config(raw, "ViT-S/16 case"), size)
    name = "vit-tiny/16 (quick)" if args.quick else "vit-small/16"
    return Case(name, cfg, 3, size, args.steps or (1 if args.quick else 2), reference=True)


CASES: dict[str, Callable[[argparse.Namespace], Case]] = {"demo": demo_case, "dino-28": dino28_case,
                                                           "vits": vits_case}


def case_inputs(case: Case, device: torch.device) -> tuple[torch.Tensor, MultiCropViews]:
    """The case's random images (on `device`) and its view maker."""
    gen = torch.Generator().manual_seed(0)
    shape = (case.batch, case.channels, case.image_size, case.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    make_views = MultiCropViews(case.cfg.views, case.channels, *channel_stats(images)).to(device)
    return images.to(device), make_views


# -- timing --------------------------------------------------------------------------------------------
@dataclass
class Run:
    method: Method
    optimizer: torch.optim.Optimizer
    lr: float
    wd: float
    clip: float


def make_run(method: Method, cfg: PretrainConfig) -> Run:
    """The method with the optimiser the engine builds for it (`optimizer_for`) and the peak lr."""
    o = cfg.optim
    return Run(method, optimizer_for(method, o, o.batch_size), o.lr * o.batch_size / 256, o.weight_decay,
               o.clip_grad)


def timed_step(run: Run, make_views: MultiCropViews, images: torch.Tensor, step: int, sync: Sync) -> list[float]:
    """Seconds spent in each of PHASES during one training step."""
    m = run.method
    sync()
    marks = [time.perf_counter()]

    def mark() -> None:
        sync()
        marks.append(time.perf_counter())

    views = make_views(images)
    mark()
    apply_schedules(run.optimizer, run.lr, run.wd)
    loss, _ = m(views, step, diagnostics=False)
    mark()
    loss.backward()
    mark()
    m.on_after_backward(step)
    clip_gradients(m, run.clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    m.on_after_step(step)
    mark()
    return [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]


def bench(run: Run, make_views: MultiCropViews, images: torch.Tensor, warmup: int, steps: int,
          sync: Sync) -> list[float]:
    """Mean seconds per phase over `steps` timed steps after `warmup` untimed ones."""
    times = [timed_step(run, make_views, images, s, sync) for s in range(warmup + steps)][warmup:]
    return [sum(col) / steps for col in zip(*times, strict=True)]


# -- one case ------------------------------------------------------------------------------------------
@dataclass
class Result:
    phases: list[float]  # mean seconds per phase
    flops: int  # of one forward+backward


def run_case(case: Case, args: argparse.Namespace, device: torch.device, sync: Sync
             ) -> tuple[dict[str, Result], str | None]:
    """Results per row label, and the check line of a case with a reference (None without)."""
    images, make_views = case_inputs(case, device)
    torch.manual_seed(0)
    fast = build_method(case.cfg, case.channels)
    models = {"optimised": fast}
    if case.reference:
        models["reference"] = build_reference(case.cfg, case.channels, fast)
    for m in models.values():
        m.to(device).setup(args.warmup + case.steps, args.warmup + case.steps)
    check = None
    if case.reference:
        check = check_line(case, *check_same_loss(fast, models["reference"], make_views(images)))
        print(check, flush=True)
    results = {}
    for label, m in models.items():
        flops = step_flops(m, make_views(images))
        print(f"{case.name}: timing {label} ({args.warmup} warm-up + {case.steps} timed steps)", flush=True)
        results[label] = Result(bench(make_run(m, case.cfg), make_views, images, args.warmup, case.steps, sync),
                                flops)
    return results, check


# -- per-op profile ------------------------------------------------------------------------------------
def profile_steps(case: Case, args: argparse.Namespace, device: torch.device, sync: Sync
                  ) -> tuple[list, float, int]:
    """(the profiler's per-op averages, wall seconds of the profiled steps, their number): whole steps of the
    case's optimised method after `args.warmup` untimed ones."""
    images, make_views = case_inputs(case, device)
    torch.manual_seed(0)
    method = build_method(case.cfg, case.channels).to(device)
    n = 1 if args.quick else 2
    method.setup(args.warmup + n, args.warmup + n)
    run = make_run(method, case.cfg)
    for s in range(args.warmup):
        timed_step(run, make_views, images, s, sync)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False, with_flops=True) as prof:
        wall = sum(sum(timed_step(run, make_views, images, args.warmup + s, sync)) for s in range(n))
    return list(prof.key_averages()), wall, n


PROFILE_HEADER = "| op | ms per step | % of step | GFLOP/s |\n|---|---:|---:|---:|"


def profile_table(events: list, wall: float, n: int) -> list[str]:
    """The PROFILE_TOP ops by self CPU time, and what they leave of the step's wall time."""
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_TOP]
    out = [PROFILE_HEADER]
    for e in top:
        seconds = e.self_cpu_time_total * 1e-6
        gflops = f"{e.flops / seconds / 1e9:.1f}" if e.flops and seconds > 0 else "-"
        out.append(f"| `{e.key}` | {1000 * seconds / n:.2f} | {100 * seconds / wall:.1f} | {gflops} |")
    rest = wall - sum(e.self_cpu_time_total for e in top) * 1e-6
    out.append(f"| (rest: other ops, autograd, Python) | {1000 * rest / n:.2f} | {100 * rest / wall:.1f} | - |")
    return out


# -- report --------------------------------------------------------------------------------------------
def check_line(case: Case, fast: float, ref: float, rel: float) -> str:
    verdict = "OK" if rel <= TOLERANCE else "FAILED"
    return (f"check {case.name}: loss optimised {fast:.6f}, reference {ref:.6f}, relative difference "
            f"{rel:.1e} (tolerance {TOLERANCE:.0e}): {verdict}")


HEADER = ("| case | batch | crops | views ms | forward ms | backward ms | optimiser ms | total ms | images/s "
          "| speed-up | fwd+bwd GFLOP | fwd+bwd GFLOP/s | matmul peak GFLOP/s | of peak |\n"
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def rows(case: Case, results: dict[str, Result], peak: float) -> list[str]:
    ips = {label: case.batch / sum(r.phases) for label, r in results.items()}
    out = []
    for label, r in results.items():
        ms = " | ".join(f"{1000 * t:.1f}" for t in [*r.phases, sum(r.phases)])
        speedup = f"{ips[label] / ips['reference']:.2f}x" if "reference" in ips else "-"
        gflops = r.flops / (r.phases[1] + r.phases[2]) / 1e9
        name = f"{case.name}, {label}" if case.reference else f"{case.name} ({case.cfg.method})"
        out.append(f"| {name} | {case.batch} | {case.crops} | {ms} | {ips[label]:.1f} | {speedup} "
                   f"| {r.flops / 1e9:.3f} | {gflops:.1f} | {peak:.1f} | {100 * gflops / peak:.1f}% |")
    return out



def machine_line(device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"torch {torch.__version__}, threads {torch.get_num_threads()}, {cpu_name()}, device {where}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def document(argv: list[str], machine: str, table: list[str], checks: list[str], profiled: str | None,
             profile_lines: list[str]) -> str:
    command = " ".join([".venv/bin/python", "benchmarks/throughput.py", *argv])
    profile_part = [f"## Per-op profile: {profiled}", "",
                    "Ops by self CPU time over whole profiled steps (views, forward, backward, optimiser) after "
                    "warm-up; % of the profiled step's wall time; GFLOP/s over the op's self time where the "
                    "profiler counts its FLOPs.", "", *profile_lines, ""] if profile_lines else []
    return "\n".join([
        "# Training-step throughput", "",
        "Written by `benchmarks/throughput.py` (see its docstring for the cases, the reference and the "
        "columns); do not edit by hand.", "",
        f"Command: `{command}`  ", f"Measured: {machine}", "",
        "Speed-up is images/s of the row over images/s of the same case's reference row. "
        "fp32, random uint8 images, mean milliseconds per step over the timed steps. GFLOP/s: the "
        "forward+backward FLOPs (FlopCounterMode) over the measured forward+backward time; matmul peak: "
        f"median fp32 {PEAK_SIZE}x{PEAK_SIZE} @ {PEAK_SIZE}x{PEAK_SIZE} in the same run.", "",
        *table, "", *[f"- {c}" for c in checks], "", *profile_part,
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 5 demo and dino-28, "
                   "2 ViT-S; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 2; 1 with "
                   "--quick)")
    p.add_argument("--batch-vits", "--batch", type=int, default=16, help="batch of the ViT-S/16 case")
    p.add_argument("--cases", default="demo,dino-28,vits", help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--profile-case", default="demo", choices=tuple(CASES), help="case of the per-op profile")
    p.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke check of a few seconds")
    p.add_argument("--out", default=None, help="Markdown file to write (default docs/throughput.md; "
                   "none with --quick)")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    names = [n.strip() for n in args.cases.split(",")]
    if unknown := [n for n in names if n not in CASES]:
        p.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    args.case_names = names
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    machine = machine_line(device)
    print(machine, flush=True)
    peak = matmul_peak(device, sync)
    print(f"matmul peak: {peak:.1f} GFLOP/s (fp32 {PEAK_SIZE}^3, median of {PEAK_REPS})", flush=True)
    table, checks = [HEADER], []
    for name in args.case_names:
        case = CASES[name](args)
        results, check = run_case(case, args, device, sync)
        table += rows(case, results, peak)
        checks += [check] if check else []
    print("\n" + "\n".join(table))
    profile_lines = [] if args.no_profile else profile_table(
        *profile_steps(CASES[args.profile_case](args), args, device, sync))
    if profile_lines:
        print(f"\nper-op profile, {args.profile_case}:\n" + "\n".join(profile_lines))
    out = args.out or (None if args.quick else str(ROOT / "docs" / "throughput.md"))
    if out:
        Path(out).write_text(document(argv, machine, table, checks, args.profile_case, profile_lines))
        print(f"wrote {out}")
    return 0 if all(c.endswith("OK") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
