import dataclasses
import json
import statistics

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.eval.context import EvalError, Protocol, build_context, pixels_context
from selfsup.eval.fewshot import FewshotOptions
from selfsup.eval.knn import KnnOptions, knn_eval
from selfsup.eval.linear import LinearOptions
from selfsup.eval.protocols import PROTOCOLS, checked, run_protocol
from selfsup.eval.subsets import stratified_subset
from selfsup.eval.supervised import SupervisedOptions
from selfsup.eval.transfer import TransferOptions
from selfsup.validate import ConfigError

RECORD_KEYS = {"protocol", "numbers", "settings", "data", "checkpoint", "seed", "time", "minutes"}


def accuracies(numbers: dict) -> list[float]:
    return [v for k, v in numbers.items() if "top" in k and not k.endswith("_std") and v is not None]


@pytest.mark.parametrize(("name", "options", "expected"), [
    ("knn", KnnOptions(k=[5, 20]), {"top1_k5", "top5_k5", "top1_k20", "top5_k20"}),
    ("linear", LinearOptions(epochs=20), {"top1", "top5"}),
    ("fewshot", FewshotOptions(subsets=2, epochs=20, finetune_epochs=1),
     {f"{kind}_{p}_top1_{s}" for kind in ("linear", "finetune") for p in ("1pct", "10pct") for s in ("mean", "std")}),
])
def test_protocol_writes_its_record_and_prints_a_table(tiny_run, capsys, name, options, expected):
    record = run_protocol(name, build_context(tiny_run, options=options))
    saved = json.loads((tiny_run / "eval" / f"{name}.json").read_text())
    assert set(saved) == RECORD_KEYS and saved["protocol"] == name and saved["numbers"] == record["numbers"]
    assert set(saved["numbers"]) == expected
    assert all(0 <= v <= 100 for v in accuracies(saved["numbers"]))
    assert set(dataclasses.asdict(options)) <= set(saved["settings"])  # the options (as resolved) are recorded
    assert saved["checkpoint"]["backbone"] == "vit-cpu" and len(saved["checkpoint"]["sha256"]) == 64
    assert saved["data"]["n_train"] == 150 and saved["data"]["pretrain"] == saved["data"]["eval"]
    assert saved["minutes"] >= 0 and saved["seed"] == 0
    out = capsys.readouterr().out
    assert "| metric | value |" in out and all(f"| {k} |" in out for k in expected)


def test_knn_protocol_matches_knn_eval(tiny_run):
    ctx = build_context(tiny_run, options=KnnOptions(k=[20]))
    numbers = run_protocol("knn", ctx, write=False, echo=False)["numbers"]
    direct = knn_eval(ctx.backbone, ctx.prepare, ctx.splits, k=20)
    assert numbers == {"top1": direct.top1, "top5": direct.top5}


def test_fewshot_rows_are_mean_and_std_over_stratified_subsets(tiny_run):
    ctx = build_context(tiny_run, options=FewshotOptions(fractions=[0.1], subsets=3, epochs=10, finetune=False))
    record = run_protocol("fewshot", ctx, write=False, echo=False)
    values, numbers = record["settings"]["linear_10pct_top1"], record["numbers"]
    assert set(numbers) == {"linear_10pct_top1_mean", "linear_10pct_top1_std"} and len(values) == 3
    assert numbers["linear_10pct_top1_mean"] == pytest.approx(statistics.fmean(values))
    assert numbers["linear_10pct_top1_std"] == pytest.approx(statistics.stdev(values))
    train_y = ctx.splits.train.labels
    assert record["settings"]["n_labelled_10pct"] == [len(stratified_subset(train_y, 0.1, s)) for s in range(3)]
    assert record["settings"]["finetune"] is False


def test_transfer_adapts_other_data_and_records_both_datasets(tiny_run, tmp_path, digits_npz):
    other = digits_npz(tmp_path / "rgb32.npz", rgb_size=32)
    ctx = build_context(tiny_run, data=str(other), options=TransferOptions(epochs=10))
    assert ctx.splits.train.images.shape[1:] == (1, 28, 28)
    record = run_protocol("transfer", ctx, echo=False)
    assert set(record["numbers"]) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"}
    data = record["data"]
    assert data["eval"] == str(other) and data["pretrain"] != data["eval"]
    assert data["adaptation"] == ["3-channel images converted by luminance to 1 channel"]
    assert "32x32 to 28x28" in data["notice"]
    assert record["settings"]["pretrain_data"] == data["pretrain"]


def test_raw_pixels_baseline(tiny_data, tmp_path):
    ctx = pixels_context(tmp_path / "pixels", str(tiny_data), KnnOptions())
    record = run_protocol("knn", ctx, echo=False)
    assert record["numbers"]["top1"] == knn_eval(nn.Flatten(), None, ctx.splits).top1
    assert record["checkpoint"]["method"] == "raw pixels" and (tmp_path / "pixels" / "eval" / "knn.json").is_file()
    with pytest.raises(EvalError, match="raw pixels"):
        run_protocol("transfer", ctx.with_options(None), write=False, echo=False)


def test_protocol_results_must_be_numbers(tiny_run, monkeypatch):
    @dataclasses.dataclass
    class NoOptions:
        pass

    fake = Protocol(lambda ctx: {"top1": 50.0, "curve": [1, 2]}, NoOptions, "returns a list")
    monkeypatch.setitem(PROTOCOLS, "fake", fake)
    with pytest.raises(TypeError, match="'curve'"):
        run_protocol("fake", build_context(tiny_run), write=False, echo=False)


def test_unlabelled_data_is_a_clear_error(tiny_run, tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, images=np.zeros((20, 28, 28), dtype=np.uint8))
    with pytest.raises(EvalError, match="unlabelled.npz has no labelled train split"):
        run_protocol("knn", build_context(tiny_run, data=str(path)), write=False, echo=False)


def test_unknown_protocol_and_bad_options(tiny_run):
    with pytest.raises(EvalError, match="unknown protocol 'nope'"):
        run_protocol("nope", build_context(tiny_run))
    # options from Python are checked against their declarations, as flags are: one place, one message
    bad = {"knn": KnnOptions(k=[0]), "fewshot": FewshotOptions(fractions=[2.0]),
           "linear": LinearOptions(val_fraction=1.0), "supervised": SupervisedOptions(fraction=0.0)}
    for name, options in bad.items():
        flag = {"knn": "--k", "fewshot": "--fractions", "linear": "--val-fraction", "supervised": "--fraction"}[name]
        with pytest.raises(ConfigError, match=f"^{flag}: got "):
            run_protocol(name, build_context(tiny_run, options=options), write=False, echo=False)
    converted = checked(PROTOCOLS["knn"], KnnOptions(k=(10, 20), temperature="0.1"))  # as YAML may give them
    assert converted.k == [10, 20] and converted.temperature == 0.1


def test_every_registered_protocol_declares_documented_options():
    assert {"knn", "linear", "fewshot", "transfer"} <= set(PROTOCOLS)
    for name, protocol in PROTOCOLS.items():
        fields = dataclasses.fields(protocol.options)
        assert protocol.help and all(f.metadata.get("help") for f in fields), name
        protocol.options()  # every option has a default


def test_features_are_shared_between_protocols(tiny_run):
    ctx = build_context(tiny_run)
    run_protocol("knn", ctx.with_options(KnnOptions()), write=False, echo=False)
    run_protocol("linear", ctx.with_options(LinearOptions(epochs=5)), write=False, echo=False)
    assert (ctx.cache.misses, ctx.cache.hits) == (2, 2)
    assert torch.equal(ctx.features("test")[1], ctx.splits.test.labels)
