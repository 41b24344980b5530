"""Every evaluation gives the same numbers at any inference batch size: --feature-batch-size for the protocols on
frozen features (k-NN, linear, few-shot, transfer, embed, streamed folders) and --eval-batch-size for those that
train the network (finetune, supervised, pseudolabel: their training batch, --batch-size, is part of the recipe
and stays fixed). Segmentation's --batch-size is checked on a constructed case in test_segmentation.py; video
propagation passes each sequence's frames at once and has no batch size.

The backbone is a ResNet, whose BatchNorm would make features depend on the batch in train mode. Batch sizes:
4 (divides neither the 30 train nor the 13 test images), 13 and 64 (larger than either split).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.eval.context import build_context
from selfsup.eval.fewshot import FewshotOptions
from selfsup.eval.finetune import FinetuneConfig, fit_and_evaluate, predict_proba
from selfsup.eval.knn import KnnOptions
from selfsup.eval.linear import LinearOptions
from selfsup.eval.protocols import run_protocol
from selfsup.eval.pseudolabel import PseudolabelOptions
from selfsup.eval.supervised import SupervisedOptions
from selfsup.eval.transfer import TransferOptions
from selfsup.models.io import BackboneSpec, load_backbone, save_backbone

BATCHES = (4, 13, 64)


def write_resnet_run(run, data, channels: int = 1, size: int = 28):
    """A run directory holding a random narrow ResNet-18 (with BatchNorm) 'pre-trained' on `data`."""
    torch.manual_seed(0)
    spec = BackboneSpec("resnet18", size, channels, None, [0.2] * channels, [0.3] * channels, width=8)
    save_backbone(spec.build(), spec, run / "backbone.safetensors")
    (run / "config.yaml").write_text(f"method: simclr\ndata: {{name: {data}}}\n")
    return run


@pytest.fixture
def resnet_run(tmp_path, digits_npz):
    return write_resnet_run(tmp_path / "run", digits_npz(tmp_path / "digits.npz", 30, 13))


def _numbers(run, protocol: str, options, batch_size: int, **kw) -> dict:
    ctx = build_context(run, options=options, device="cpu", batch_size=batch_size, cache=False, **kw)
    return run_protocol(protocol, ctx, write=False, echo=False)["numbers"]


def _same(numbers: list[dict]) -> None:
    """All dicts equal (floats to 1e-5 relative: another batch may sum in another order)."""
    for other in numbers[1:]:
        assert other.keys() == numbers[0].keys()
        for key, value in numbers[0].items():
            assert other[key] == (value if value is None else pytest.approx(value, rel=1e-5, abs=1e-8)), key


def test_features_do_not_depend_on_the_batch_size(resnet_run):
    for split in ("train", "test"):
        features = [build_context(resnet_run, device="cpu", batch_size=b, cache=False).features(split)[0]
                    for b in BATCHES]
        for x in features[1:]:
            torch.testing.assert_close(x, features[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("protocol", "options"), [
    ("knn", KnnOptions(k=[1, 5])),
    ("linear", LinearOptions(lrs=[0.1, 1.0], epochs=5)),
    ("fewshot", FewshotOptions(fractions=[0.5], subsets=2, lrs=[0.1, 1.0], epochs=5, finetune=False)),
    ("transfer", TransferOptions(k=[3], lrs=[0.1, 1.0], epochs=5)),
])
def test_frozen_feature_protocols(resnet_run, protocol, options):
    _same([_numbers(resnet_run, protocol, options, b) for b in BATCHES])


def test_cli_knn_and_embed(resnet_run, tmp_path, capsys):
    embeddings, top1 = [], []
    for b in BATCHES:
        common = ["--checkpoint", str(resnet_run), "--feature-batch-size", str(b), "--no-cache", "--device", "cpu"]
        assert main(["knn", *common, "--k", "3"]) == 0
        top1.append(capsys.readouterr().out)
        out = tmp_path / f"emb{b}.npy"
        assert main(["embed", *common, "--out", str(out)]) == 0
        capsys.readouterr()
        embeddings.append(np.load(out))
    assert top1[0].startswith("k-NN") and top1.count(top1[0]) == len(top1)
    for e in embeddings[1:]:
        np.testing.assert_allclose(e, embeddings[0], rtol=1e-5, atol=1e-6)


def test_streamed_folder_features_and_knn(tmp_path, photo_folder):
    folder = photo_folder(tmp_path / "photos", "split")  # 24 train / 12 test files
    run = write_resnet_run(tmp_path / "run", folder, channels=3, size=16)
    features = []
    for b in (5, 12, 64):
        ctx = build_context(run, device="cpu", batch_size=b, cache=False, data_stream="always", data_workers=0)
        assert ctx.streamed
        features.append(ctx.features("train")[0])
    for x in features[1:]:
        torch.testing.assert_close(x, features[0], rtol=1e-5, atol=1e-6)
    _same([_numbers(run, "knn", KnnOptions(k=[3]), b, data_stream="always", data_workers=0) for b in (5, 12, 64)])


TRAIN = {"epochs": 1.0, "batch_size": 8, "warmup_epochs": 0.0}  # 3 steps over 30 images, BatchNorm recomputed


def test_finetune_predictions_and_batchnorm_statistics(resnet_run):
    ctx = build_context(resnet_run, device="cpu", cache=False)
    train, test = ctx.labelled("train"), ctx.labelled("test")
    runs = [fit_and_evaluate(ctx.backbone, ctx.prepare, train, test, FinetuneConfig(**TRAIN, eval_batch_size=b))
            for b in (3, 64)]
    (a, scores_a), (b, scores_b) = runs
    for name, buffer in a.model.state_dict().items():  # the precise-BN statistics among them
        torch.testing.assert_close(b.model.state_dict()[name], buffer, rtol=1e-5, atol=1e-6, msg=name)
    probs = [predict_proba(r.model, ctx.prepare, test.images, size) for (r, _), size in zip(runs, (3, 64),
                                                                                             strict=True)]
    torch.testing.assert_close(probs[1], probs[0], rtol=1e-5, atol=1e-6)
    _same([{k: v for k, v in s.items() if k not in ("minutes", "settings")} for s in (scores_a, scores_b)])


@pytest.mark.parametrize(("protocol", "options"), [
    ("finetune", FinetuneConfig(**TRAIN)),
    ("supervised", SupervisedOptions(**TRAIN, fraction=0.5)),
    ("pseudolabel", PseudolabelOptions(**TRAIN, fraction=0.5, threshold=0.1)),
])
def test_protocols_that_train_the_network(resnet_run, tmp_path, protocol, options):
    numbers, backbones = [], []
    for b in (3, 13, 64):
        opts = dataclasses.replace(options, eval_batch_size=b)
        if protocol == "supervised":
            opts = dataclasses.replace(opts, out=str(tmp_path / f"supervised-{b}"))
        numbers.append({k: v for k, v in _numbers(resnet_run, protocol, opts, 512).items() if k != "minutes"})
        if protocol == "supervised":
            backbones.append(load_backbone(tmp_path / f"supervised-{b}" / "backbone.safetensors")[0].state_dict())
    _same(numbers)
    for state in backbones[1:]:  # the saved backbone's BatchNorm statistics
        for name, buffer in backbones[0].items():
            torch.testing.assert_close(state[name], buffer, rtol=1e-5, atol=1e-6, msg=name)
