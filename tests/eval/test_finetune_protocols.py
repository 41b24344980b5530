import json

import pytest
import torch

from selfsup.data import ImageSet, Splits, load_data
from selfsup.data.views import channel_stats
from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.finetune import FinetuneConfig
from selfsup.eval.protocols import PROTOCOLS, run_protocol
from selfsup.eval.pseudolabel import PseudolabelOptions
from selfsup.eval.supervised import SupervisedOptions
from selfsup.models.io import BackboneSpec, load_backbone, normalizer


def context(tmp_path, options) -> EvalContext:
    """A tiny run: a random vit-cpu and 40 / 20 digits."""
    splits = load_data("digits")
    train = ImageSet(splits.train.images[:40], splits.train.labels[:40], splits.train.classes)
    test = ImageSet(splits.test.images[:20], splits.test.labels[:20], splits.test.classes)
    mean, std = channel_stats(train.images)
    spec = BackboneSpec("vit-cpu", 28, 1, None, mean, std)
    torch.manual_seed(0)
    return EvalContext(backbone=spec.build(), spec=spec, prepare=normalizer(spec), run_dir=tmp_path / "run",
                       splits=Splits("digits", train, test), data="digits", options=options)


def test_registered():
    assert PROTOCOLS["finetune"].options is FinetuneConfig and not PROTOCOLS["finetune"].pixels
    assert PROTOCOLS["supervised"].options is SupervisedOptions
    assert PROTOCOLS["pseudolabel"].options is PseudolabelOptions


def test_finetune_protocol_writes_its_record(tmp_path):
    ctx = context(tmp_path, FinetuneConfig(epochs=1, batch_size=20))
    record = run_protocol("finetune", ctx, echo=False)
    saved = json.loads((tmp_path / "run" / "eval" / "finetune.json").read_text())
    assert saved["numbers"]["steps"] == 2 and saved["numbers"]["n_train"] == 40
    assert 0 <= saved["numbers"]["top1"] <= 100 and saved["numbers"]["top5"] is not None
    assert saved["settings"]["layer_decay"] == 0.65 and record["numbers"] == saved["numbers"]


def test_supervised_protocol_saves_an_evaluable_run(tmp_path):
    ctx = context(tmp_path, SupervisedOptions(epochs=1, batch_size=10, fraction=0.5))
    record = run_protocol("supervised", ctx, echo=False)
    assert record["numbers"]["n_labelled"] == record["numbers"]["n_train"] < 40
    assert record["settings"]["init"] == "random" and record["settings"]["layer_decay"] == 1.0
    run = tmp_path / "run" / "supervised-0.5"
    assert record["settings"]["run"] == str(run)
    backbone, spec = load_backbone(run / "backbone.safetensors")
    assert spec == ctx.spec and (run / "config.yaml").is_file()


def test_pseudolabel_protocol_numbers(tmp_path):
    ctx = context(tmp_path, PseudolabelOptions(epochs=1, batch_size=10, fraction=0.5, threshold=0.5))
    numbers = run_protocol("pseudolabel", ctx, write=False, echo=False)["numbers"]
    assert numbers["n_labelled"] + numbers["n_unlabelled"] == 40
    assert {"top1", "top1_labelled_only", "gain", "n_pseudo", "pseudo_accuracy", "top5"} <= set(numbers)


def test_raw_pixels_are_refused(tmp_path):
    ctx = context(tmp_path, None)
    ctx.spec = None
    with pytest.raises(EvalError, match="raw pixels"):
        run_protocol("finetune", ctx, write=False, echo=False)
