import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass

import pytest
import torch

from selfsup.cli import build_parser, main
from selfsup.eval.commands import add_option_flags, options_from
from selfsup.eval.fewshot import FewshotOptions
from selfsup.eval.protocols import PROTOCOLS
from selfsup.models.io import BackboneSpec, save_backbone
from selfsup.options import Allowed, allowed, opt
from selfsup.validate import ConfigError


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_knn_with_several_k_and_the_knn_alias(tiny_run, tiny_data, capsys):
    assert main(["eval", "knn", "--checkpoint", str(tiny_run), "--k", "5", "20", "--json"]) == 0
    record = last_json(capsys)
    assert record["protocol"] == "knn" and set(record["numbers"]) == {"top1_k5", "top5_k5", "top1_k20", "top5_k20"}
    assert record["data"]["eval"] == str(tiny_data)  # --data defaults to the run's pre-training data
    assert json.loads((tiny_run / "eval" / "knn.json").read_text())["numbers"] == record["numbers"]
    assert main(["knn", "--checkpoint", str(tiny_run), "--data", str(tiny_data), "--json"]) == 0
    flat = last_json(capsys)
    assert flat["top1"] == record["numbers"]["top1_k20"]
    assert (flat["k"], flat["n_train"], flat["n_test"]) == (20, 150, 50)


def test_eval_knn_feature_is_evaluated_recorded_and_cached_apart(tiny_run, capsys):
    features = tiny_run / "eval" / "features"

    def cached() -> dict[str, dict]:
        return {f.name: torch.load(f, weights_only=True) for f in features.glob("train-*.pt")}

    assert main(["eval", "knn", "--checkpoint", str(tiny_run), "--json"]) == 0
    assert last_json(capsys)["checkpoint"]["feature"] == "cls"
    (default_file, default), = cached().items()
    assert default["key"]["feature"] == "cls" and default["features"].shape == (150, 128)
    assert main(["eval", "knn", "--checkpoint", str(tiny_run), "--feature", "cls-last4", "--json"]) == 0
    record = last_json(capsys)
    assert record["checkpoint"]["feature"] == "cls-last4"
    files = cached()
    (last4_file, last4), = ((name, v) for name, v in files.items() if name != default_file)
    assert last4["key"]["feature"] == "cls-last4" and last4["features"].shape == (150, 4 * 128)
    assert torch.equal(files[default_file]["features"], default["features"])  # the default's file is untouched
    assert torch.equal(last4["features"][:, -128:], default["features"])  # its last block is the default's CLS


def test_a_bad_feature_is_one_line(tiny_run, tmp_path, tiny_data, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "knn", "--checkpoint", str(tiny_run), "--feature", "max"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --feature: invalid choice: 'max'" in err and "cls-last4" in err
    run = tmp_path / "resnet"
    spec = BackboneSpec("resnet18", 28, 1, None, [0.2], [0.3])
    save_backbone(spec.build(), spec, run / "backbone.safetensors")
    (run / "config.yaml").write_text(f"method: simclr\ndata: {{name: {tiny_data}}}\n")
    assert main(["knn", "--checkpoint", str(run), "--feature", "mean"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("selfsup knn: error: --feature mean")
    assert "ResNet, which always average-pools" in err


def test_eval_fewshot_flags(tiny_run, capsys):
    args = ["eval", "fewshot", "--checkpoint", str(tiny_run), "--fractions", "0.1", "--subsets", "1", "--epochs", "5",
            "--no-finetune", "--lrs", "0.1", "1", "--json"]
    assert main(args) == 0
    record = last_json(capsys)
    assert record["numbers"]["linear_10pct_top1_std"] is None and "finetune_10pct_top1_mean" not in record["numbers"]
    assert record["settings"]["lrs"] == [0.1, 1.0] and record["settings"]["finetune"] is False


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "linear", "--optimizer", "lars"], "--optimizer: got 'lars', expected one of 'sgd', 'adamw'"),
    (["eval", "linear", "--val-fraction", "1.5"], "--val-fraction: got 1.5, expected a number in (0, 1)"),
    (["eval", "knn", "--data", "/no/such/data"], "unknown data"),
])
def test_bad_options_are_one_line(tiny_run, capsys, args, message):
    assert main([*args, "--checkpoint", str(tiny_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[0] and err.startswith("selfsup eval: error:") and "Traceback" not in err


def test_missing_run_and_missing_data(tmp_path, capsys):
    assert main(["eval", "linear", "--checkpoint", str(tmp_path), "--data", "digits"]) == 2
    assert "no backbone file" in capsys.readouterr().err
    assert main(["eval", "linear", "--checkpoint", str(tmp_path)]) == 2
    assert "pass --data" in capsys.readouterr().err


def test_help_lists_protocols_and_option_advice(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("knn", "linear", "fewshot", "transfer"))
    with pytest.raises(SystemExit):
        main(["eval", "fewshot", "--help"])
    out = capsys.readouterr().out
    assert "--fractions" in out and "--no-finetune" in out and "1%" in out and "default: [0.01, 0.1]" in out


def test_flags_follow_the_option_types():
    @dataclass
    class Options:
        scale: tuple[float, float] = opt((0.3, 1.0), "a pair")
        minutes: float | None = opt(None, "optional")
        flag: bool = opt(True, "a switch")

    p = argparse.ArgumentParser()
    add_option_flags(p, Options)
    assert options_from(Options, p.parse_args([])) == Options()
    got = options_from(Options, p.parse_args(["--scale", "0.5", "1", "--minutes", "2", "--no-flag"]))
    assert got == Options(scale=(0.5, 1.0), minutes=2.0, flag=False)
    with pytest.raises(SystemExit):
        p.parse_args(["--scale", "0.5"])


def other_value(hint, allow: Allowed, default):
    """A valid value of an option that differs from its default (a flag that is dropped or mangled shows)."""
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    hint = kinds[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return (0.25, 0.75) if default != (0.25, 0.75) else (0.5, 1.0)
    if origin is list:
        first = other_value(args[0], allow, None)
        return [first, first * 2] if args[0] is int else [first, first / 2]
    if hint is bool:
        return not default
    if hint is str:
        return next(c for c in allow.choices if c != default) if allow.choices else "elsewhere"
    candidates = (3, 7) if hint is int else (0.5, 0.25, 0.75, 2.0)
    return next(hint(c) for c in candidates if allow.admits(c) and c != default)


def as_flags(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_parser_builds(name):
    """Every protocol's parser takes every one of its options, and each reaches the options dataclass."""
    cls = PROTOCOLS[name].options
    parser = build_parser()
    args = parser.parse_args(["eval", name, "--checkpoint", "r"])
    assert args.protocol == name and options_from(cls, args) == cls()
    hints = typing.get_type_hints(cls)
    values = {n: other_value(hints[n], allowed(f), getattr(cls(), n)) for n, f in
              ((f.name, f) for f in dataclasses.fields(cls))}
    argv = ["eval", name, "--checkpoint", "r", "--data", "digits"]
    for option, value in values.items():
        argv += as_flags(option, value)
    got = options_from(cls, parser.parse_args(argv))
    assert got == cls(**values) and got != cls()


def test_protocol_options_are_checked_when_parsed(capsys):
    args = build_parser().parse_args(["eval", "fewshot", "--checkpoint", "r", "--fractions", "0.1", "1.5"])
    with pytest.raises(ConfigError, match=r"^--fractions: got \[0.1, 1.5\], expected a non-empty list of numbers, "
                       r"each in \(0, 1\]$"):
        options_from(FewshotOptions, args)
    assert main(["knn", "--checkpoint", "r", "--k", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("selfsup knn: error: --k: got [0], expected a non-empty list of "
                                               "integers, each >= 1")
