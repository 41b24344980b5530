"""FLOPs of a training step and the machine's matmul peak, for benchmarks/throughput.py's GFLOP/s columns.

FLOPs are what `torch.utils.flop_counter.FlopCounterMode` counts (matmuls, convolutions, attention; not
elementwise ops, norms or softmax), with formulas added for the CPU flash-attention kernels, which torch's
counter would count as 0."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from selfsup.methods import Method
from selfsup.models.running_stats import RunningStats

Sync = Callable[[], None]  # waits for the device (a no-op on CPU)
PEAK_SIZE, PEAK_WARMUP, PEAK_REPS = 1024, 3, 20  # the matmul peak: fp32 (n, n) @ (n, n)


def _attention_shape(q: torch.Size, k: torch.Size) -> int:
    """batch x heads x query tokens x key tokens x head width of (B, H, N, D) queries and keys."""
    *lead, n_q, d = q
    return int(torch.Size(lead).numel()) * n_q * k[-2] * d


def _cpu_sdpa_flops(q: torch.Size, k: torch.Size, v: torch.Size, *args, out_shape=None, **kwargs) -> int:
    return 2 * 2 * _attention_shape(q, k)  # q @ k^T and softmax @ v, as flop_counter's sdpa_flop_count


def _cpu_sdpa_backward_flops(grad_out: torch.Size, q: torch.Size, k: torch.Size, v: torch.Size, *args,
                             out_shape=None, **kwargs) -> int:
    return 4 * 2 * _attention_shape(q, k)  # grads of v, scores, q and k: four matmuls


# torch's counter has formulas for the CUDA attention kernels only; CPU SDPA would count 0 FLOPs
CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                       torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of what `fn` runs, as FlopCounterMode counts them, CPU attention included."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def step_flops(method: Method, views: list[torch.Tensor]) -> int:
    """FLOPs of one forward+backward of `method` on `views`; gradients and running statistics are put back."""
    stats = RunningStats(method)
    stats.save()

    def forward_backward() -> None:
        method(views, 0, diagnostics=False)[0].backward()

    flops = count_flops(forward_backward)
    stats.restore()
    method.zero_grad(set_to_none=True)
    return flops


def matmul_peak(device: torch.device, sync: Sync, n: int = PEAK_SIZE) -> float:
    """GFLOP/s of an fp32 (n, n) @ (n, n) product: median over PEAK_REPS after PEAK_WARMUP."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device) for _ in range(2))
    times = []
    for i in range(PEAK_WARMUP + PEAK_REPS):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        if i >= PEAK_WARMUP:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9
