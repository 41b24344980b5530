import json

import pytest

from selfsup.cli import main
from selfsup.eval.context import EvalError
from selfsup.eval.report import load_run, markdown_table, report

PNG = b"\x89PNG\r\n\x1a\n"


def write(run, protocol, numbers, data=None, method="dino"):
    record = {"protocol": protocol, "numbers": numbers, "settings": {},
              "data": data or {"eval": "fashion-mnist", "name": "fashion-mnist", "pretrain": "fashion-mnist"},
              "checkpoint": {"run": str(run), "method": method}, "seed": 0, "time": "t", "minutes": 0.1}
    (run / "eval").mkdir(parents=True, exist_ok=True)
    (run / "eval" / f"{protocol}.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    a, b = tmp_path / "dino", tmp_path / "simclr"
    write(a, "linear", {"top1": 80.5, "top5": 99.0})
    write(a, "fewshot", {"linear_1pct_top1_mean": 60.0, "linear_1pct_top1_std": 1.5})
    write(a, "transfer", {"knn_top1": 70.0, "linear_top1": 75.0},
          data={"eval": "digits", "name": "digits", "pretrain": "fashion-mnist"})
    (a / "config.yaml").write_text("method: dino\ndata: {name: fashion-mnist}\n")
    write(b, "linear", {"top1": 77.25, "top5": None}, method="simclr")
    (b / "eval" / "knn.json").write_text(json.dumps({"top1": 74.53, "top5": 97.0, "k": 20, "n_train": 60000}))
    return a, b


def test_table_has_a_row_per_run_and_a_column_per_protocol_metric(runs):
    a, b = runs
    lines = markdown_table([load_run(a), load_run(b)]).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["run", "method", "pre-trained on", "knn top1", "linear top1", "fewshot linear_1pct_top1",
                      "transfer on digits knn_top1", "transfer on digits linear_top1"]
    row_a = [c.strip() for c in lines[2].strip("|").split("|")]
    row_b = [c.strip() for c in lines[3].strip("|").split("|")]
    assert row_a == [str(a), "dino", "fashion-mnist", "-", "80.50", "60.00 ± 1.50", "70.00", "75.00"]
    assert row_b == [str(b), "simclr", "fashion-mnist", "74.53", "77.25", "-", "-", "-"]  # pretrain's flat knn.json


def test_report_writes_markdown_and_bar_plot(runs, tmp_path):
    out = tmp_path / "out" / "report.md"
    text = report(list(runs), out)
    assert out.read_text() == text and "![top1 by protocol](report.png)" in text
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(PNG) and len(png) > 5000
    assert "| linear top5 |" not in text and "top5" in report(list(runs), metric="top5")


def test_cli_report_and_its_errors(runs, tmp_path, capsys):
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "r.md"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "| run | method |" in out and json.loads(out.strip().splitlines()[-1])["plot"] == str(tmp_path / "r.png")
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no eval/*.json results" in err and "selfsup eval" in err
    (runs[0] / "eval" / "broken.json").write_text("{not json")
    with pytest.raises(EvalError, match="broken.json is not a result file"):
        load_run(runs[0])
