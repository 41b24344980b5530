import json

from selfsup.cli import build_parser, main, resolve_config


def parse(*argv):
    return build_parser().parse_args(["pretrain", *argv])


def test_command_line_overrides_yaml_and_defaults(tmp_path):
    y = tmp_path / "r.yaml"
    y.write_text("optim: {lr: 0.01, minutes: 5}\ndino: {out_dim: 256}\n")
    cfg = resolve_config(parse("--config", str(y), "--dino.out-dim", "128", "--batch-size", "32",
                               "--views.global-scale", "[0.3, 1.0]"))
    assert cfg.optim.lr == 0.01 and cfg.method_cfg.out_dim == 128 and cfg.optim.batch_size == 32
    assert cfg.views.global_scale == (0.3, 1.0) and cfg.optim.minutes == 5


def test_epochs_on_the_command_line_replace_a_minutes_budget(tmp_path):
    y = tmp_path / "r.yaml"
    y.write_text("optim: {minutes: 5}\n")
    cfg = resolve_config(parse("--config", str(y), "--epochs", "2"))
    assert cfg.optim.minutes is None and cfg.optim.epochs == 2


def test_help_carries_defaults_and_paper_values(capsys):
    try:
        main(["pretrain", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "--dino.teacher-temp" in out and "paper: 65536" in out


def test_bad_input_is_one_line_without_traceback(tmp_path, capsys):
    assert main(["pretrain", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown data" in err and "Traceback" not in err
    assert main(["knn", "--checkpoint", str(tmp_path), "--data", "digits"]) == 2
    assert "no backbone file" in capsys.readouterr().err


def test_pretrain_then_knn_json(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--epochs", str(1 / 22), "--batch-size", "64", "--out", str(out),
            "--views.n-local", "0", "--dino.out-dim", "64", "--no-progress", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 1 and 0 <= summary["knn_top1"] <= 100
    assert main(["knn", "--checkpoint", str(out), "--data", "digits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"top1", "k", "temperature", "n_train", "n_test"} <= set(result)
    assert result["n_train"] == 1437 and result["k"] == 20
    assert abs(result["top1"] - summary["knn_top1"]) < 1e-9
