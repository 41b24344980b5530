import json

import pytest

import selfsup.ablate.run as run
from selfsup.ablate import ablate
from selfsup.cli import main
from selfsup.config import ConfigError


def test_two_tiny_variants_run_into_a_report_and_a_rerun_does_not_retrain(write_recipe, tmp_path, monkeypatch,
                                                                          capsys):
    recipe, out = write_recipe(), tmp_path / "out"
    assert main(["ablate", str(recipe), "--out", str(out), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    report = (out / "reproduction.md").read_text()
    assert summary["report"] == str(out / "reproduction.md")
    assert "| momentum | - | 72.7 |" in report and "| copy | dino.teacher=copy, views.n_local=2 | 0.1 |" in report
    row = {r["variant"]: r for r in summary["variants"]}
    floor = row["copy"]["knn_random_top1"]  # the same starting network as momentum's (random_init.py)
    assert 0 < floor <= 100 and row["momentum"]["knn_random_top1"] == floor
    assert f"| {row['copy']['linear_top1']:.1f} | {floor:.1f} | lower than momentum;" in report
    for name in ("tiny-entropy.png", "tiny-knn.png", "tiny-cost.png", "tiny-axis.png"):
        assert (out / name).stat().st_size > 0 and f"({name})" in report
    result = json.loads((out / "tiny" / "copy.json").read_text())
    assert 0 <= result["knn_top1"] <= 100 and 0 <= result["linear_top1"] <= 100
    assert result["peak_memory_mib"] > 0 and result["memory"] == "CPU max RSS" and result["train_minutes"] > 0
    assert result["config"]["dino"]["teacher"] == "copy" and result["steps"] == 2
    assert any("knn_student_top1" in line for line in result["curve"])
    assert any("teacher_student_kl" in line for line in result["curve"])
    assert (out / "tiny" / "copy" / "eval" / "linear.json").exists()  # the probe of `selfsup eval linear`
    assert row["momentum"]["holds"] is None and row["copy"]["holds"] in (True, False)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was trained again")

    monkeypatch.setattr(run, "_spawn", no_training)
    (out / "tiny.notes.md").write_text("The copy teacher does not collapse in two steps.\n")
    again = ablate([recipe], out, progress=False)
    assert again["variants"] == summary["variants"]
    report = (out / "reproduction.md").read_text()
    assert "Notes (tiny.notes.md, written after the runs):\n\nThe copy teacher does not collapse" in report
    with pytest.raises(ConfigError, match="momentum.json holds variant momentum run with another config"):
        ablate([write_recipe(seed=1)], out, progress=False)


def test_direction_and_collapse_decide_whether_a_row_holds(write_recipe):
    from selfsup.ablate import load_recipe
    from selfsup.ablate.report import holds

    recipe = load_recipe(write_recipe())
    ref, copy = recipe.variants
    healthy = [{"step": 1, "loss": 4.0, "emb_std": 0.05, "emb_std_ideal": 0.07}]
    collapsed = [{"step": 1, "loss": 4.0, "emb_std": 0.0001, "emb_std_ideal": 0.07}]
    low, high = {"knn_top1": 10.0, "curve": healthy}, {"knn_top1": 60.0, "curve": healthy}
    assert holds(recipe, copy, low, high) is True
    assert holds(recipe, copy, high, low) is False  # the seed's direction does not hold
    assert holds(recipe, copy, {**low, "curve": collapsed}, high) is False  # collapse: none expected
    assert holds(recipe, ref, high, high) is None  # the reference claims nothing


def test_the_command_reports_a_bad_recipe_in_one_line(write_recipe, tmp_path, capsys):
    path = write_recipe(budget={"epochs": -1})
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"selfsup ablate: error: {path}: budget.epochs: got -1, expected a number > 0"]
    assert not (tmp_path / "out").exists()
