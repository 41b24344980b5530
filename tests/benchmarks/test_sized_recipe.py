"""benchmarks/sized_recipe.py in its smoke mode: photos made, the command run with only --data and --minutes,
the peak RSS and the run's own estimate read, the table written."""

import os

import pytest
from conftest import load_script
from PIL import Image


@pytest.fixture(scope="module")
def bench():
    yield from load_script("sized_recipe")


def test_photos_are_jpegs_in_class_folders(bench, tmp_path):
    classes = bench.make_photos(tmp_path, 20, 48)
    train = sorted((tmp_path / "train").glob("*/*.jpg"))
    assert classes >= 5 and len(train) == 20 and len({p.parent.name for p in train}) == classes
    assert Image.open(train[0]).size == (48, 48) and len(list((tmp_path / "test").glob("*/*.jpg"))) >= classes


def test_the_estimate_is_read_from_the_runs_line(bench):
    assert bench.estimated_gib(["x", "memory: peak about 1.3 GiB (model 0.10, ...)"]) == 1.3
    assert bench.estimated_gib(["memory: peak about GPU 9.0 GiB + RAM 2.5 GiB (...)"]) == 2.5
    assert bench.estimated_gib(["nothing"]) is None


def test_tree_rss_counts_this_process(bench):
    assert bench.tree_rss(os.getpid()) > 10 * 1024**2


def test_smoke_run(bench, tmp_path):
    report = tmp_path / "sized_recipe.md"
    r = bench.main(["--smoke", "--out", str(tmp_path), "--report", str(report)])
    assert r["rc"] == 0 and r["epochs"] > 0 and r["peak_rss_gib"] > 0.1 and r["estimate_gib"] > 0.1
    assert 0 <= r["summary"]["knn_top1"] <= 100 and r["chance"] == pytest.approx(100 / r["classes"])
    text = report.read_text()
    assert "| 0.05 |" in text and "sized for 60 RGB images of 64 px, streamed" in text
