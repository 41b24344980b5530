"""Memory and time of a training step with the backbone on K micro-batches (--optim.micro-batches).

Each K runs in its own process (so that each process's peak resident memory is its own step's): DINO with
multi-crop on random views, forward and backward, `--steps` timed steps after one warm-up. Prints a table
with the peak memory and the step time against K = 1 measured by this run on this machine. On CPU the peak
is the process's max RSS (interpreter, weights and data included: the differences between rows are what
counts); on a GPU, the allocator's peak.

    python benchmarks/micro_batches.py [--backbone vit-small --size 96 --batch 64] [--parts 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from selfsup.config import build_config
from selfsup.engine.build import build_method, resolve_sizes
from selfsup.machine import machine_words


def one_run(args: argparse.Namespace) -> dict:
    """Time and peak memory of `args.steps` DINO steps at `args.one` micro-batches, in this process."""
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    local = args.size // 2 // args.patch * args.patch
    cfg = build_config({"method": "dino", "backbone": {"name": args.backbone, "patch_size": args.patch},
                        "views": {"global_size": args.size, "local_size": local, "n_local": args.local},
                        "optim": {"batch_size": args.batch, "micro_batches": args.one}})
    method = build_method(resolve_sizes(cfg, args.size), channels=3).to(device)
    method.setup(total_steps=100, steps_per_epoch=10)
    views = [torch.randn(args.batch, 3, args.size, args.size, device=device) for _ in range(2)]
    views += [torch.randn(args.batch, 3, local, local, device=device) for _ in range(args.local)]
    times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        loss, _ = method(views, step, diagnostics=False)
        loss.backward()
        method.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"parts": args.one, "step_s": sum(times[1:]) / args.steps, "peak_mb": peak / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vit-small")
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--size", type=int, default=96, help="global crop side (local crops: half of it)")
    p.add_argument("--local", type=int, default=4, help="local crops per image")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--parts", default="1,2,4", help="micro-batch counts, comma-separated; the first is the base")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one count in this process
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args)))
        return
    rows = []
    for k in (int(x) for x in args.parts.split(",")):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--one", str(k)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    base = rows[0]
    print(f"DINO on {args.backbone}/{args.patch}, batch {args.batch} of 2x{args.size} + {args.local}x"
          f"{args.size // 2 // args.patch * args.patch} crops; {machine_words()}, torch {torch.__version__}\n")
    print("| micro-batches | peak memory (MB) | vs 1 part | step (s) | vs 1 part |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['parts']} | {r['peak_mb']:.0f} | {r['peak_mb'] / base['peak_mb']:.2f} | {r['step_s']:.2f} | "
              f"{r['step_s'] / base['step_s']:.2f} |")


if __name__ == "__main__":
    main()
