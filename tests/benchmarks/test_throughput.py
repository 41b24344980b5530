"""benchmarks/throughput.py: the quick run's tables."""

from __future__ import annotations


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
