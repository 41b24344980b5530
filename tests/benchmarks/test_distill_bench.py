"""benchmarks/distill.py and benchmarks/continue_screen.py in their smoke modes: each writes its table."""

import json

import pytest
import torch

from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture
def teacher(tmp_path):
    """A random network of the demo's shape (conv stem, 7-px patches, the patches feature) on 28-px digits."""
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 28, 1, 7, [0.2], [0.3], pool="patches", stem="conv")
    save_backbone(spec.build(), spec, tmp_path / "teacher" / "backbone.safetensors")
    return tmp_path / "teacher"


def test_distill_benchmark_smoke_writes_the_three_rows_over_two_seeds(distill_bench, teacher, tmp_path):
    module = distill_bench
    doc = tmp_path / "distill.md"
    rows = module.main(["--smoke", "--teacher", str(teacher), "--out", str(tmp_path / "runs"), "--doc", str(doc),
                        "--seeds", "0", "1"])
    assert [r["row"] for r in rows] == ["teacher (the demo)", "student, distilled",
                                        "student, from scratch (demo recipe)"]
    assert rows[1]["width"] == rows[2]["width"] == 64 and rows[0]["width"] is None
    assert all(0 <= r["knn_top1"] <= 100 and r["gflops_per_image"] > 0 for r in rows)
    assert [len(r["knn_seeds"]) for r in rows] == [1, 2, 2]  # the teacher is one run; each student one per seed
    assert (tmp_path / "runs" / "seed1" / "student" / "backbone.safetensors").exists()
    assert rows[1]["gflops_per_image"] < rows[0]["gflops_per_image"]  # half the width: about a quarter the FLOPs
    text = doc.read_text()
    assert "| student, distilled |" in text and "threads" in text
    assert "Over seeds 0, 1:" in text and "from scratch on" in text
    assert json.loads(doc.with_suffix(".json").read_text()) == rows


def test_continue_screen_smoke_writes_its_table(continue_screen, teacher, tmp_path):
    module = continue_screen
    doc = tmp_path / "continue.md"
    rows = module.main(["--smoke", "--init", str(teacher), "--out", str(tmp_path / "runs"), "--doc", str(doc)])
    assert [r["variant"] for r in rows] == ["source (backbone frozen)",
                                            "base: lr x0.1, warm-up 0.3, heads first 0.2 epoch"]
    assert all(0 <= r["knn_top1"] <= 100 for r in rows)
    assert "| source (backbone frozen) |" in doc.read_text()


def test_distill_screen_smoke_writes_its_table(distill_screen, teacher, tmp_path):
    module = distill_screen
    doc = tmp_path / "screen.md"
    rows = module.main(["--smoke", "--teacher", str(teacher), "--out", str(tmp_path / "runs"), "--doc", str(doc)])
    assert [r["variant"] for r in rows] == list(module.VARIANTS)[:2]
    assert all(0 <= r["knn_top1"] <= 100 for r in rows)
    assert "| crops 0.5-1 |" in doc.read_text() and "validation" in doc.read_text()
