"""Images/s of one DINO training step, split into phases, against a plain reference implementation.

    .venv/bin/python benchmarks/throughput.py [--device cpu] [--steps N] [--warmup N] [--batch-vits 16]
                                              [--threads N] [--cases demo,vits] [--quick] [--out FILE]

Cases (random uint8 images, fp32, no Fabric wrapper):
  (a) demo    the `demo` preset (configs/demo.yaml): its backbone, patch, crops, head, batch 256, on 1x28x28.
  (b) vits    ViT-S/16: 2x224 + 10x96 crops of 3x224x224 images, out_dim 65536 as in the paper, --batch-vits.
Each case times the library's DINO step ("optimised": SDPA attention, views grouped by size, einsum loss)
and a plain reference built here on top of it ("reference": explicit-softmax attention, every view through
backbone and head on its own, the loss as a double loop of cross-entropies), after checking that both give
the same loss on the same views. A step is split into views (MultiCropViews), forward (teacher, student and
loss), backward, and optimiser (freeze hook, per-parameter clipping, AdamW, zero_grad, teacher EMA), as in
`selfsup.engine.pretrain.optimization_step`. The head's last layer is trained (as after DINO's first epoch).
A full run writes its table to --out (default docs/throughput.md); --quick (tiny sizes) writes nothing
unless --out is given.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from selfsup.config import PretrainConfig, build_config, merge, recipe
from selfsup.data.views import MultiCropViews, channel_stats
from selfsup.engine.optim import apply_schedules, build_optimizer, clip_gradients
from selfsup.engine.pretrain import build_method, resolve_sizes
from selfsup.methods.dino import DINO, DINOLoss
from selfsup.models import build_backbone
from selfsup.models.vit import Attention

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("views", "forward", "backward", "optimiser")
TOLERANCE = 1e-4  # relative difference allowed between the optimised and the reference loss
TRAIN_LAST_LAYER = {"dino": {"freeze_last_layer": 0.0}}
VITS = {"method": "dino", "backbone": {"name": "vit-small", "patch_size": 16, "drop_path": 0.1},
        "views": {"global_size": 224, "local_size": 96, "n_local": 10}, "dino": {"out_dim": 65536}}
QUICK_VITS = {"backbone": {"name": "vit-tiny"}, "views": {"global_size": 32, "local_size": 16, "n_local": 2},
              "dino": {"out_dim": 1024, "hidden_dim": 256}}


# -- the reference: plain DINO -----------------------------------------------------------------------
def _explicit_attention(self: Attention, x: torch.Tensor, return_attention: bool = False):
    """Attention.forward that always takes the explicit-softmax path and drops the maps unless asked."""
    out, attn = Attention.forward(self, x, return_attention=True)
    return (out, attn) if return_attention else out


def use_explicit_attention(model: torch.nn.Module) -> None:
    """Patch this model's Attention instances only (the class and other models keep SDPA)."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(_explicit_attention, m)


def loop_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], loss_fn: DINOLoss,
              teacher_temp: float) -> torch.Tensor:
    """DINO's loss as in the original code: a cross-entropy per (teacher view, other student view) pair."""
    terms = []
    for i, t in enumerate(teacher_out):
        q = F.softmax((t.float() - loss_fn.center) / teacher_temp, dim=-1)
        for v, s in enumerate(student_out):
            if v != i:
                terms.append(F.cross_entropy(s.float() / loss_fn.student_temp, q))
    return sum(terms) / len(terms)


class ReferenceDINO(DINO):
    """DINO with a per-view Python loop: each view through backbone and head on its own."""

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self.teacher
        with torch.no_grad():
            teacher_out = [teacher["head"](teacher["backbone"](v)) for v in views[: self.n_global]]
        student_out = [self.head(self.backbone(v)) for v in views]
        loss = loop_loss(student_out, teacher_out, self.loss_fn, float(self.teacher_temp[step]))
        self._batch_center = torch.cat(teacher_out).float().mean(dim=0, keepdim=True)  # centre: on_after_step
        return loss, {}


def build_reference(cfg: PretrainConfig, channels: int, fast: DINO) -> ReferenceDINO:
    """A ReferenceDINO with the weights of `fast` and explicit attention in student and teacher."""
    v, b = cfg.views, cfg.backbone
    backbone = build_backbone(b.name, v.global_size, channels, b.patch_size, b.drop_path)
    ref = ReferenceDINO(backbone, cfg.method_cfg, n_global=v.n_global)
    ref.load_state_dict(fast.state_dict())
    use_explicit_attention(ref)
    return ref


# -- cases ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    cfg: PretrainConfig
    channels: int
    image_size: int
    steps: int

    @property
    def batch(self) -> int:
        return self.cfg.optim.batch_size

    @property
    def crops(self) -> str:
        v = self.cfg.views
        return f"{v.n_global}x{v.global_size} + {v.n_local}x{v.local_size}"


def demo_case(args: argparse.Namespace) -> Case:
    raw = merge(recipe("demo"), {"optim": {"batch_size": 8 if args.quick else 256}, **TRAIN_LAST_LAYER})
    cfg = resolve_sizes(build_config(raw, "demo preset"), 28)
    return Case("demo", cfg, 1, 28, args.steps or (1 if args.quick else 5))


def vits_case(args: argparse.Namespace) -> Case:
    raw = merge(VITS, QUICK_VITS) if args.quick else VITS
    raw = merge(raw, {"optim": {"batch_size": 4 if args.quick else args.batch_vits}, **TRAIN_LAST_LAYER})
    size = raw["views"]["global_size"]
    cfg = resolve_sizes(build_config(raw, "ViT-S/16 case"), size)
    name = "vit-tiny/16 (quick)" if args.quick else "vit-small/16"
    return Case(name, cfg, 3, size, args.steps or (1 if args.quick else 2))


# -- timing --------------------------------------------------------------------------------------------
@dataclass
class Run:
    method: DINO
    optimizer: torch.optim.Optimizer
    lr: float
    wd: float
    clip: float


def make_run(method: DINO, cfg: PretrainConfig) -> Run:
    o = cfg.optim
    return Run(method, build_optimizer(method), o.lr * o.batch_size / 256, o.weight_decay, o.clip_grad)


def timed_step(run: Run, make_views: MultiCropViews, images: torch.Tensor, step: int, sync) -> list[float]:
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
    loss, _ = m(views, step)
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
          sync) -> list[float]:
    """Mean seconds per phase over `steps` timed steps after `warmup` untimed ones."""
    times = [timed_step(run, make_views, images, s, sync) for s in range(warmup + steps)][warmup:]
    return [sum(col) / steps for col in zip(*times, strict=True)]


def check_same_loss(fast: DINO, ref: DINO, views: list[torch.Tensor]) -> tuple[float, float, float]:
    """(optimised loss, reference loss, relative difference) at step 0, without dropped paths; the
    loss centres are restored afterwards so the check leaves no trace."""
    centers = [m.loss_fn.center.clone() for m in (fast, ref)]
    fast.eval()
    ref.eval()
    with torch.no_grad():
        a, b = float(fast(views, 0)[0]), float(ref(views, 0)[0])
    for m, c in zip((fast, ref), centers, strict=True):
        m.loss_fn.center.copy_(c)
        m.train()
    return a, b, abs(a - b) / max(abs(b), 1e-12)


def run_case(case: Case, args: argparse.Namespace, device: torch.device) -> tuple[list[str], str]:
    """Table rows (optimised, reference) and the check line of one case."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    shape = (case.batch, case.channels, case.image_size, case.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    make_views = MultiCropViews(case.cfg.views, case.channels, *channel_stats(images)).to(device)
    images = images.to(device)
    torch.manual_seed(0)
    fast = build_method(case.cfg, case.channels)
    models = {"optimised": fast, "reference": build_reference(case.cfg, case.channels, fast)}
    for m in models.values():
        m.to(device).setup(args.warmup + case.steps, args.warmup + case.steps)
    check = check_line(case, *check_same_loss(fast, models["reference"], make_views(images)))
    print(check, flush=True)
    phases = {}
    for label, m in models.items():
        print(f"{case.name}: timing {label} ({args.warmup} warm-up + {case.steps} timed steps)", flush=True)
        phases[label] = bench(make_run(m, case.cfg), make_views, images, args.warmup, case.steps, sync)
    return rows(case, phases), check


# -- report --------------------------------------------------------------------------------------------
def check_line(case: Case, fast: float, ref: float, rel: float) -> str:
    verdict = "OK" if rel <= TOLERANCE else "FAILED"
    return (f"check {case.name}: loss optimised {fast:.6f}, reference {ref:.6f}, relative difference "
            f"{rel:.1e} (tolerance {TOLERANCE:.0e}): {verdict}")


HEADER = ("| case | batch | crops | views ms | forward ms | backward ms | optimiser ms | total ms | images/s "
          "| speed-up |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")


def rows(case: Case, phases: dict[str, list[float]]) -> list[str]:
    ips = {label: case.batch / sum(p) for label, p in phases.items()}
    out = []
    for label, p in phases.items():
        ms = " | ".join(f"{1000 * t:.1f}" for t in [*p, sum(p)])
        speedup = ips[label] / ips["reference"]
        out.append(f"| {case.name}, {label} | {case.batch} | {case.crops} | {ms} | {ips[label]:.1f} "
                   f"| {speedup:.2f}x |")
    return out


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line(device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"torch {torch.__version__}, threads {torch.get_num_threads()}, {cpu_name()}, device {where}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def document(machine: str, table: str, checks: list[str]) -> str:
    command = " ".join([".venv/bin/python", "benchmarks/throughput.py", *sys.argv[1:]])
    return "\n".join([
        "# Training-step throughput", "",
        "Written by `benchmarks/throughput.py` (see its docstring for the cases and the reference); "
        "do not edit by hand.", "",
        f"Command: `{command}`  ", f"Measured: {machine}", "",
        "Speed-up is images/s of the row over images/s of the same case's reference row. "
        "fp32, random uint8 images, mean milliseconds per step over the timed steps.", "",
        table, "", *[f"- {c}" for c in checks], "",
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 5 demo, 2 ViT-S; "
                   "1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 2; 1 with "
                   "--quick)")
    p.add_argument("--batch-vits", "--batch", type=int, default=16, help="batch of the ViT-S/16 case")
    p.add_argument("--cases", default="demo,vits", help="comma-separated subset of demo,vits")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke check of a few seconds")
    p.add_argument("--out", default=None, help="Markdown file to write (default docs/throughput.md; "
                   "none with --quick)")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_line(device)
    print(machine, flush=True)
    builders = {"demo": demo_case, "vits": vits_case}
    table, checks = [HEADER], []
    for name in args.cases.split(","):
        case_rows, check = run_case(builders[name.strip()](args), args, device)
        table += case_rows
        checks.append(check)
    print("\n" + "\n".join(table))
    out = args.out or (None if args.quick else str(ROOT / "docs" / "throughput.md"))
    if out:
        Path(out).write_text(document(machine, "\n".join(table), checks))
        print(f"wrote {out}")
    return 0 if all(c.endswith("OK") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
