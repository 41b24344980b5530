"""benchmarks/gpu_check.py in its smoke mode on the CPU: every section runs (or says it needs CUDA) and the table
is written, so that the one call on a lent GPU does not fail on a typo."""

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def check():
    yield from load_script("gpu_check")


def test_every_section_runs_at_tiny_sizes(check, tmp_path):
    rows = check.main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "gpu_check.md")])
    sections = {r[0] for r in rows}
    assert sections == set(check.SECTIONS), rows
    assert not [r for r in rows if "ERROR" in r[2] or "FAILED" in r[3]], rows
    cuda_only = {r[0] for r in rows if r[2].startswith("skipped: needs CUDA")}
    assert cuda_only == {"syncs", "memory", "flash"}
    resumed = [r for r in rows if r[0] == "resume"]
    assert resumed and all("max |diff| 0.0e+00" in r[2] for r in resumed)  # exact on a CPU
    text = (tmp_path / "gpu_check.md").read_text()
    assert text.startswith("# The GPU check (smoke)") and "| parity | dino |" in text


def test_a_failing_section_is_a_row_and_the_others_still_run(check, tmp_path, monkeypatch):
    def broken(device, smoke):
        raise RuntimeError("boom")

    monkeypatch.setitem(check.SECTIONS, "views", broken)
    rows = check.main(["--smoke", "--device", "cpu", "--only", "views,syncs", "--out", str(tmp_path / "x.md")])
    assert rows[0] == ("views", "-", "ERROR RuntimeError: boom", "FAILED") and rows[1][0] == "syncs"
