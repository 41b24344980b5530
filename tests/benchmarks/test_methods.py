"""benchmarks/methods.py: the table says which recipe each row trained with, and re-renders from its JSON."""

from __future__ import annotations

import json
import sys

ROW = {"method": "byol", "backbone": "vit-cpu", "knn": 70.36, "linear": 72.64, "feature_std": 0.5, "epochs": 1.2,
       "minutes": 2.5, "images_per_s": 400, "peak_mem_mb": 900, "steps": 280, "head_std": 0.9,
       "recipe": "lars lr 0.2 wd 1.5e-06, views byol"}
ARGS = {"minutes": 2.5, "data": "fashion-mnist", "recipe": "paper", "seed": 0}


def test_paper_table_has_the_recipe_column_and_the_caveat(methods):
    text = methods.markdown([ROW], methods.argparse.Namespace(**ARGS))
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert header.split("|")[2].strip() == "recipe"
    assert "| byol | lars lr 0.2 wd 1.5e-06, views byol | vit-cpu |" in text
    assert "still rising" in text and "--recipe paper" in text
    shared = methods.markdown([ROW], methods.argparse.Namespace(**{**ARGS, "recipe": "shared"}))
    assert "still rising" not in shared


def test_render_rewrites_the_table_from_its_json(methods, tmp_path, monkeypatch):
    out = tmp_path / "methods.md"
    record = {"args": ARGS, "rows": [ROW], "machine": "CPU X, 2 threads", "date": "2026-01-02"}
    out.with_suffix(".json").write_text(json.dumps(record))
    monkeypatch.setattr(sys, "argv", ["methods.py", "--render", "--out", str(out)])
    methods.main()
    text = out.read_text()
    assert "| byol |" in text and "70.36" in text
    assert "on 2026-01-02, torch" in text and "CPU X, 2 threads, no GPU" in text  # where and when it was measured


def test_finetune_column_and_single_view_recipes(methods):
    args = methods.argparse.Namespace(**{**ARGS, "finetune_minutes": 1.5, "size": 32})
    text = methods.markdown([{**ROW, "finetune": 81.25}, {**ROW, "method": "raw pixels", "finetune": None}], args)
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert "fine-tune top-1 (%)" in header and "--finetune-minutes 1.5" in text and "--size 32" in text
    assert "| 72.64 | 81.25 |" in text and "| 72.64 | - |" in text
    assert methods.recipe_for("mae", "paper", 32)["views"]["n_global"] == 1
    assert methods.recipe_for("mae", "paper", 32)["backbone"]["patch_size"] == 8
    assert "n_global" not in methods.recipe_for("byol", "paper", 28)["views"]  # the method's recipe decides
    assert methods.trainable_on("mae", 1)


def test_add_merges_new_rows_with_the_tables_own_settings(methods, tmp_path, monkeypatch):
    out = tmp_path / "methods.md"
    old = {**ROW, "method": "dino"}
    record = {"args": {**ARGS, "finetune_minutes": 1.0}, "rows": [{**ROW, "method": "raw pixels"}, old, ROW],
              "machine": "CPU X, 1 threads", "date": "2026-01-02"}
    out.with_suffix(".json").write_text(json.dumps(record))
    calls = []

    def fake_run_all(names, data, minutes, seed, work, reuse, recipe, size, finetune_minutes, baselines):
        calls.append((names, minutes, recipe, finetune_minutes, baselines))
        return [{**ROW, "method": n, "knn": 77.77} for n in names]

    monkeypatch.setattr(methods, "run_all", fake_run_all)
    monkeypatch.setattr(methods, "machine_words", lambda: "CPU Y, 1 threads")
    monkeypatch.setattr(sys, "argv", ["methods.py", "--add", "--methods", "ibot,byol", "--minutes", "9",
                                      "--out", str(out), "--work", str(tmp_path / "work")])
    methods.main()
    assert calls == [(["ibot", "byol"], 2.5, "paper", 1.0, False)]  # the table's budget, not --minutes
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["raw pixels", "dino", "ibot", "byol"]  # byol replaced, dino kept
    text = out.read_text()
    assert "| ibot |" in text and "on 2026-01-02, torch" in text
    assert "Rows added later" in text and "ibot on " in text and "(CPU Y, 1 threads)" in text
