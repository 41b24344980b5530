"""benchmarks/throughput.py: the quick run's tables, and the FLOP counting it reports GFLOP/s with."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_quick_run_writes_gflops_and_profile(throughput, one_thread, tmp_path):
    out = tmp_path / "t.md"
    assert throughput.main(["--quick", "--cases", "demo,dino-28", "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    lines = text.splitlines()
    header = cells(next(line for line in lines if line.startswith("| case |")))
    assert header[-4:] == ["fwd+bwd GFLOP", "fwd+bwd GFLOP/s", "matmul peak GFLOP/s", "of peak"]
    table = [cells(line) for line in lines if line.startswith(("| demo (", "| dino-28, "))]
    assert [row[0] for row in table] == ["demo (simclr)", "dino-28, optimised", "dino-28, reference"]
    for row in table:
        assert len(row) == len(header)
        flops, gflops, peak, share = row[-4:]
        assert float(flops) > 0 and float(gflops) > 0 and float(peak) > 0 and float(share.rstrip("%")) > 0
    assert table[0][9] == "-"  # the demo case has no reference row
    assert "## Per-op profile: demo" in text
    assert any(line.startswith("| `aten::") for line in lines)
    check = next(line for line in lines if line.startswith("- check dino-28:"))
    assert check.endswith(": OK")


def test_linear_flops(throughput, one_thread):
    """A Linear layer's product, forward and backward: 2*B*in*out FLOPs per matmul; the bias add and the bias
    gradient (a sum) are not counted."""
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64, requires_grad=True)  # as inside a network: the input's gradient is computed too
    assert throughput.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 8 * 64 * 32
    x = torch.randn(8, 64)  # an input without gradient: forward and the weight gradient only
    assert throughput.count_flops(lambda: layer(x).sum().backward()) == 2 * 2 * 8 * 64 * 32


def test_cpu_attention_flops_match_the_explicit_path(throughput, one_thread):
    """SDPA's CPU kernel counts as the explicit q @ k^T, softmax, @ v it computes: 2 matmuls forward, 4 backward."""
    b, h, n, d = 2, 3, 17, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    fused = throughput.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    explicit = throughput.count_flops(
        lambda: ((q @ k.transpose(-2, -1) * d**-0.5).softmax(-1) @ v).sum().backward())
    assert fused == explicit == 6 * 2 * b * h * n * n * d
