"""benchmarks/flop_count.py: the FLOPs that throughput.py reports GFLOP/s with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def test_linear_flops(flop_count, one_thread):
    """A Linear layer's product, forward and backward: 2*B*in*out FLOPs per matmul; the bias add and the bias
    gradient (a sum) are not counted."""
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64, requires_grad=True)  # as inside a network: the input's gradient is computed too
    assert flop_count.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 8 * 64 * 32
    x = torch.randn(8, 64)  # an input without gradient: forward and the weight gradient only
    assert flop_count.count_flops(lambda: layer(x).sum().backward()) == 2 * 2 * 8 * 64 * 32


def test_cpu_attention_flops_match_the_explicit_path(flop_count, one_thread):
    """SDPA's CPU kernel counts as the explicit q @ k^T, softmax, @ v it computes: 2 matmuls forward, 4 backward."""
    b, h, n, d = 2, 3, 17, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    fused = flop_count.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    explicit = flop_count.count_flops(
        lambda: ((q @ k.transpose(-2, -1) * d**-0.5).softmax(-1) @ v).sum().backward())
    assert fused == explicit == 6 * 2 * b * h * n * n * d
