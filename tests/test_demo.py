import json

import selfsup.data.fashion_mnist as fm
from selfsup.cli import main


def test_demo_prints_the_three_rows_and_json(tmp_path, capsys):
    args = ["demo", "--data", "digits", "--minutes", "0.05", "--batch-size", "64", "--out", str(tmp_path / "d"),
            "--views.n-local", "0", "--no-progress", "--json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "raw pixels" in out and "random init" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["dataset"] == "digits" and summary["minutes"] > 0
    assert summary["method"] == "simclr" and summary["feature"] == "patches" and summary["epochs"] > 0
    assert f"{summary['epochs']:.1f} epochs" in out  # the demo says how far the machine got
    assert f"on {summary['machine']}" in out and "threads" in summary["machine"]  # ... and which machine
    assert abs(summary["knn_pixels"] - 96.94) < 0.01  # the brief's measured floor on this split
    for key in ("knn_learned", "knn_random"):
        assert 10 < summary[key] <= 100


def test_demo_falls_back_to_digits_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "absent")
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    args = ["demo", "--minutes", "0.02", "--batch-size", "64", "--out", str(tmp_path / "d"),
            "--views.n-local", "0", "--no-progress", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    notices = [line for line in captured.err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "digits" in notices[0]
    assert json.loads(captured.out.strip().splitlines()[-1])["dataset"] == "digits"


def test_demo_names_the_split_it_evaluates_on(tmp_path, capsys):
    args = ["demo", "--data", "digits", "--minutes", "0.02", "--batch-size", "64", "--out", str(tmp_path / "d"),
            "--data.holdout", "0.2", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "k-NN on the 20% held out of the training images" in out and "test split" not in out
