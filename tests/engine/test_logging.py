import json

from selfsup.engine.logging import RunLogger


def test_log_appends_one_json_line_per_call_and_the_bar_follows_a_replan(tmp_path):
    log = RunLogger(tmp_path, total_steps=100, start_step=0, progress=False)
    log.log(1, {"loss": 2.5, "note": "x"})
    log.log(2, {"loss": 2.0})
    log.progress(2, loss=2.0)
    log.set_total(60)
    assert log.bar.total == 60
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["loss"]) for x in lines] == [(1, 2.5), (2, 2.0)] and lines[0]["note"] == "x"
    assert list((tmp_path / "tensorboard").iterdir())


def test_a_disabled_logger_writes_nothing(tmp_path):
    log = RunLogger(tmp_path, total_steps=10, start_step=0, enabled=False)
    log.log(1, {"loss": 1.0})
    log.close()
    assert not (tmp_path / "metrics.jsonl").exists()
