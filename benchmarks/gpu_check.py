"""The GPU path checked in one command (issue "The GPU path"): one table at the end, written to docs/gpu_check.md.

    bash scripts/gpu_check.sh                      # on a GPU machine: setup, then this, ~10 minutes
    .venv/bin/python benchmarks/gpu_check.py [--only parity,syncs,...] [--out FILE]
    .venv/bin/python benchmarks/gpu_check.py --smoke --device cpu --out FILE   # tiny sizes on a CPU (the test)

Sections (each one's failure is a row of the table, not the end of the run):
  parity   every method's step under bf16 autocast against fp32 on the same batch of real digits: relative loss
           difference (goal < 1e-2) and gradient cosine (goal > 0.98); DINO `mse` and SimCLR at T=0.1 included.
  syncs    host syncs (torch.cuda.set_sync_debug_mode) in DINO engine steps off and on log steps.
  views    DINO's 2x224 + 10x96 views of 256 images: kornia's "slice" cropping (a loop over images) against
           "resample" (one batched warp), ms per batch.
  steps    bf16 training steps of DINO and DINOv2 ViT-S/16 (2x224 + 10x96) and SimCLR ResNet-50 (2x224):
           images/s, the share of the step the GPU idles (torch.profiler's kernel time against the wall time) and
           MFU against a bf16 matmul peak measured in the same run (goal >= 40% for ViT-S/16).
  stream   a streamed folder of 256-px JPEGs: decoded images/s for 0, 2, 4, 8 DataLoader workers.
  resume   30 engine steps of DINO, MoCo v2, SwAV and MAE with a checkpoint at 15, against the same run stopped
           at 15 and resumed: max |difference| of the final weights (goal: < 1e-3 on a GPU, whose kernels are
           not all deterministic; exact on a CPU).
  memory   peak GPU memory of a DINO ViT-S/16 step with the backbone on 1 and 4 micro-batches.
  flash    ViT-S/16's forward in bf16 under the flash-attention backend against the math backend.
Never claim a GPU number this script did not measure: the table says the device, date, torch and CUDA.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "engine"))  # the tests' tiny method builder (ddp_worker.build)

Row = tuple[str, str, str, str]  # section, case, measured, goal and verdict


def sync_of(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(fn: Callable[[], object], device: torch.device, reps: int, warm: int = 2) -> float:
    """Median seconds of `fn` over `reps` runs after `warm`."""
    sync, times = sync_of(device), []
    for i in range(warm + reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warm:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def amp(device: torch.device, enabled: bool = True) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# -- parity ------------------------------------------------------------------------------------------------------
def parity(device: torch.device, smoke: bool) -> list[Row]:
    from ddp_worker import RGB_DATA, build, pixel_drawn_masks, pixel_drawn_puzzles

    from selfsup.data import load_data
    from selfsup.methods import METHODS

    variants = {**{m: (m, {}) for m in sorted(METHODS)},
                "dino-mse": ("dino", {"loss": "mse", "out_dim": 4096}), "simclr-t0.1": ("simclr", {"temperature": 0.1})}
    if smoke:
        variants = {k: variants[k] for k in ("dino", "simclr-t0.1")}
    images = load_data("digits").train.images[:16].float() / 255
    rows = []
    for name, (method_name, overrides) in variants.items():
        small = F.interpolate(images, size=16, mode="bilinear", antialias=True)
        if method_name in RGB_DATA:
            small = small * torch.rand(len(small), 3, 1, 1, generator=torch.Generator().manual_seed(0))
        small = ((small - 0.5) / 0.25).to(device)
        views = [small, small.flip(-1), small[..., 4:12, 4:12], small[..., 2:10, 6:14]]
        spec = METHODS[method_name]
        views = views if spec.multicrop else views[:spec.n_views]
        method = build(method_name, **({"koleo_loss_weight": 0.0} if name == "dinov2" else {}), **overrides)
        pixel_drawn_masks(method)
        pixel_drawn_puzzles(method)
        method.setup(total_steps=10, steps_per_epoch=5)
        method = method.to(device)
        (l32, g32), (l16, g16) = (loss_and_grad(method, views, device, bf16) for bf16 in (False, True))
        rel, cos = abs(l16 - l32) / max(abs(l32), 1e-8), float(F.cosine_similarity(g16, g32, dim=0))
        ok = rel < 1e-2 and cos > 0.98
        rows.append(("parity", name, f"loss {rel:.1e} rel., grad cos {cos:.4f}",
                     f"< 1e-2, > 0.98: {'ok' if ok else 'FAILED'}"))
    return rows


def loss_and_grad(method, views, device: torch.device, bf16: bool) -> tuple[float, torch.Tensor]:
    method = copy.deepcopy(method)
    torch.manual_seed(0)
    with amp(device, bf16):
        loss, _ = method(views, step=0)
    loss.backward()
    grads = [p.grad.flatten() for p in method.parameters() if p.grad is not None]
    return float(loss.detach()), torch.cat(grads).float()


# -- syncs -------------------------------------------------------------------------------------------------------
def syncs(device: torch.device, smoke: bool) -> list[Row]:
    if device.type != "cuda":
        return [("syncs", "DINO engine step", "skipped: needs CUDA (set_sync_debug_mode)", "-")]
    from ddp_worker import build, fixed_views
    from lightning.fabric import Fabric

    from selfsup.engine.optim import param_groups
    from selfsup.engine.pretrain import optimization_step

    fabric = Fabric(accelerator="cuda", devices=1, precision="bf16-mixed")
    method = build("dino")
    method.setup(total_steps=100, steps_per_epoch=10)
    model, optimizer = fabric.setup(method, torch.optim.AdamW(param_groups(method), lr=0.0))
    views = [v.to(device) for v in fixed_views(8, "dino")]
    rows = []
    for log_step in (False, True):
        counts = []
        for step in range(4):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                optimization_step(fabric, model, method, optimizer, views, step, 1e-4, 0.04, 3.0,
                                  diagnostics=log_step)
                torch.cuda.set_sync_debug_mode("default")
            counts.append(sum("synchroniz" in str(w.message) for w in caught))
        rows.append(("syncs", f"DINO step, {'log' if log_step else 'non-log'} step", f"{max(counts[1:])} per step",
                     "0 off log steps (a few on log steps)" if not log_step else "-"))
    return rows


# -- views -------------------------------------------------------------------------------------------------------
def views(device: torch.device, smoke: bool) -> list[Row]:
    import selfsup.data.views as V
    from selfsup.config import build_config

    cfg = build_config({"method": "dino"}).views
    cfg.global_size, cfg.local_size, cfg.n_local = (32, 16, 2) if smoke else (224, 96, 10)
    batch = 8 if smoke else 256
    side = cfg.global_size * 8 // 7
    images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, device=device)
    module = V.MultiCropViews(cfg, 3, [0.5] * 3, [0.25] * 3).to(device)
    chosen, rows, saved = V.cropping_mode(device), [], V.cropping_mode
    try:
        for mode in ("slice", "resample"):
            V.cropping_mode = lambda _d, m=mode: m  # noqa: E731
            ms = timed(lambda: module(images), device, reps=2 if smoke else 5) * 1e3
            rows.append(("views", f"{cfg.n_global}x{cfg.global_size} + {cfg.n_local}x{cfg.local_size} of {batch} "
                         f"images, {mode}", f"{ms:.1f} ms a batch", "the engine uses this one" if mode == chosen
                         else "-"))
    finally:
        V.cropping_mode = saved
    return rows


# -- steps -------------------------------------------------------------------------------------------------------
def steps(device: torch.device, smoke: bool) -> list[Row]:
    from flop_count import step_flops

    peak = bf16_peak(device, 512 if smoke else 8192)
    rows = [("steps", "bf16 matmul peak", f"{peak / 1e12:.1f} TFLOP/s", "measured here")]
    cases = {"DINO ViT-S/16, 2x224 + 10x96": ("dino", "vit-small", 16, (224, 96, 10), 64),
             "DINOv2 ViT-S/16, 2x224 + 10x96": ("dinov2", "vit-small", 16, (224, 96, 10), 64),
             "SimCLR ResNet-50, 2x224": ("simclr", "resnet50", None, (224, 96, 0), 128)}
    if smoke:
        cases = {"DINO vit-tiny/8, 2x32 + 2x16": ("dino", "vit-tiny", 8, (32, 16, 2), 4)}
    for name, (method_name, backbone, patch, sizes, batch) in cases.items():
        method, views_ = training_case(method_name, backbone, patch, sizes, batch, device)
        step = bf16_step(method, views_, device)
        seconds = timed(step, device, reps=2 if smoke else 10)
        with amp(device):
            flops = step_flops(method, views_)
        mfu = flops / seconds / peak
        idle = idle_share(step, device)
        goal = ">= 40% MFU" if "ViT-S" in name else "-"  # issues "The GPU path" and "The DINOv2 recipe"
        rows.append(("steps", f"{name}, batch {batch}", f"{batch / seconds:.0f} images/s, MFU {mfu:.0%}, GPU idle "
                     f"{idle}", goal))
    return rows


def bf16_step(method: torch.nn.Module, views_: list[torch.Tensor], device: torch.device) -> Callable[[], None]:
    """One AdamW training step of `method` on `views_` under bf16 autocast."""
    opt = torch.optim.AdamW(method.parameters(), lr=1e-6)

    def step() -> None:
        with amp(device):
            loss, _ = method(views_, 0, diagnostics=False)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def training_case(method_name: str, backbone: str, patch: int | None, sizes: tuple[int, int, int], batch: int,
                  device: torch.device) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    from selfsup.config import build_config
    from selfsup.engine.build import build_method, resolve_sizes

    g, local, n_local = sizes
    raw = {"method": method_name, "backbone": {"name": backbone, **({"patch_size": patch} if patch else {})},
           "views": {"global_size": g, "local_size": local, "n_local": n_local}, "optim": {"batch_size": batch}}
    cfg = resolve_sizes(build_config(raw), g)
    torch.manual_seed(0)
    method = build_method(cfg, channels=3).to(device)
    method.setup(total_steps=1000, steps_per_epoch=100)
    views_ = [torch.randn(batch, 3, g, g, device=device) for _ in range(2)]
    return method, views_ + [torch.randn(batch, 3, local, local, device=device) for _ in range(n_local)]


def bf16_peak(device: torch.device, n: int) -> float:
    """FLOP/s of a bf16 (n, n) @ (n, n) product on `device` (fp32 on a CPU, where bf16 is emulated)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / timed(lambda: a @ b, device, reps=10, warm=3)


def idle_share(step: Callable[[], None], device: torch.device) -> str:
    """1 - (kernel time / wall time) over 3 profiled steps."""
    if device.type != "cuda":
        return "n/a on CPU"
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
    return f"{max(0.0, 1 - busy / wall):.0%}"


# -- stream ------------------------------------------------------------------------------------------------------
def stream(device: torch.device, smoke: bool) -> list[Row]:
    from sized_recipe import make_photos

    from selfsup.data.batch_source import Layout
    from selfsup.data.streaming import StreamedFolder

    root = Path(tempfile.mkdtemp(prefix="gpu-check-photos-"))
    count, batch = (48, 8) if smoke else (2048, 256)
    make_photos(root, count, 64 if smoke else 256)
    rows = []
    for workers in ((0, 2) if smoke else (0, 2, 4, 8)):
        data = StreamedFolder(root / "train", workers=workers)
        source = data.source(Layout(0, batch), 32 if smoke else 224)
        it = source.batches(0)
        next(it)  # workers started, first batch decoded
        t0, n = time.perf_counter(), 0
        for _ in range(source.steps_per_epoch - 1):
            n += len(next(it))
        it.close()
        rows.append(("stream", f"{count} JPEGs, batch {batch}, {workers} workers",
                     f"{n / (time.perf_counter() - t0):.0f} images/s", "-"))
    return rows


# -- resume ------------------------------------------------------------------------------------------------------
def resume(device: torch.device, smoke: bool) -> list[Row]:
    from safetensors.torch import load_file

    from selfsup.engine.pretrain import Trainer

    steps_, rows = (4 if smoke else 30), []
    for method in (("dino",) if smoke else ("dino", "moco-v2", "swav", "mae")):
        out = Path(tempfile.mkdtemp(prefix=f"gpu-check-{method}-"))
        whole, resumed = (resume_config(method, out / name, steps_, device) for name in ("whole", "resumed"))
        Trainer(whole, progress=False).fit()
        Trainer(resumed, progress=False, stop_at_step=steps_ // 2).fit()
        Trainer(resumed, resume=True, progress=False).fit()
        a, b = (load_file(out / n / "backbone.safetensors") for n in ("whole", "resumed"))
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        goal = 1e-3 if device.type == "cuda" else 0.0
        rows.append(("resume", f"{method}, {steps_} steps, resumed at {steps_ // 2}", f"max |diff| {diff:.1e}",
                     f"<= {goal:g}: {'ok' if diff <= goal else 'FAILED'}"))
    return rows


def resume_config(method: str, out: Path, steps_: int, device: torch.device):
    """`steps_` steps of `method` on the digits (batch 32 of 1,437: 44 steps an epoch), a checkpoint half-way."""
    from selfsup.config import build_config

    return build_config({"method": method, "data": {"name": "digits"}, "backbone": {"name": "vit-cpu", "patch_size": 7},
                         "views": {"global_size": 28, "local_size": 14,
                                   "n_local": 2 if method in ("dino", "swav") else 0},
                         "optim": {"epochs": steps_ / (1437 // 32), "batch_size": 32},
                         "run": {"out": str(out), "eval_knn": False, "checkpoint_every": steps_ // 2,
                                 "accelerator": device.type}})


# -- memory ------------------------------------------------------------------------------------------------------
def memory(device: torch.device, smoke: bool) -> list[Row]:
    if device.type != "cuda":
        return [("memory", "micro-batches", "skipped: needs CUDA (benchmarks/micro_batches.py measures CPU RSS)", "-")]
    from selfsup.config import build_config
    from selfsup.engine.build import build_method, resolve_sizes

    rows, base = [], None
    for parts in (1, 4):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cfg = build_config({"method": "dino", "backbone": {"name": "vit-small", "patch_size": 16},
                            "views": {"global_size": 224, "local_size": 96, "n_local": 10},
                            "optim": {"batch_size": 64, "micro_batches": parts}})
        method = build_method(resolve_sizes(cfg, 224), channels=3).to(device)
        method.setup(total_steps=100, steps_per_epoch=10)
        views_ = [torch.randn(64, 3, 224, 224, device=device) for _ in range(2)]
        views_ += [torch.randn(64, 3, 96, 96, device=device) for _ in range(10)]
        with amp(device):
            loss, _ = method(views_, 0, diagnostics=False)
        loss.backward()
        peak = torch.cuda.max_memory_allocated() / 2**30
        base = base or peak
        rows.append(("memory", f"DINO ViT-S/16 batch 64, {parts} micro-batch(es)", f"{peak:.2f} GiB peak",
                     f"{peak / base:.2f}x of 1 part"))
        del method, views_, loss
    return rows


# -- flash -------------------------------------------------------------------------------------------------------
def flash(device: torch.device, smoke: bool) -> list[Row]:
    if device.type != "cuda":
        return [("flash", "ViT-S/16 forward", "skipped: needs CUDA (the flash kernel)", "-")]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from selfsup.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone("vit-small", img_size=224, patch_size=16, in_chans=3).to(device).eval()
    x = torch.randn(32, 3, 224, 224, device=device)
    with torch.no_grad(), amp(device):
        with sdpa_kernel(SDPBackend.MATH):
            want = model(x).float()
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            got = model(x).float()
            ms = timed(lambda: model(x), device, reps=10) * 1e3
    rel = float((got - want).norm() / want.norm())
    return [("flash", "ViT-S/16 forward, batch 32, bf16", f"runs; {ms:.1f} ms; rel. diff to math {rel:.1e}",
             f"< 1e-2: {'ok' if rel < 1e-2 else 'FAILED'}")]


SECTIONS: dict[str, Callable[[torch.device, bool], list[Row]]] = {
    "parity": parity, "syncs": syncs, "views": views, "steps": steps, "stream": stream, "resume": resume,
    "memory": memory, "flash": flash}


def device_words(device: torch.device) -> str:
    from selfsup.machine import machine_words

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, torch {torch.__version__}"
    return f"{machine_words()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds on a CPU): the test's run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu_check.md")
    args = p.parse_args(argv)
    device, rows = torch.device(args.device), []
    for name in args.only.split(","):
        t0 = time.perf_counter()
        try:
            rows += SECTIONS[name](device, args.smoke)
        except Exception as e:  # noqa: BLE001 -- a section's failure is a row; the others still run
            traceback.print_exc()
            rows.append((name, "-", f"ERROR {type(e).__name__}: {str(e)[:200]}", "FAILED"))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = "\n".join([f"# The GPU check{' (smoke)' if args.smoke else ''}", "",
                      f"Written by benchmarks/gpu_check.py on {dt.date.today().isoformat()}; {device_words(device)}.",
                      "", "| section | case | measured | goal |", "|---|---|---|---|",
                      *(f"| {' | '.join(r)} |" for r in rows)]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
