import json

import pytest
import torch

from selfsup.data import ImageSet, load_data
from selfsup.eval.context import run_info
from selfsup.eval.features import extract_features
from selfsup.eval.finetune import FinetuneConfig
from selfsup.eval.supervised import (
    labelled_subset,
    random_backbone,
    scratch_config,
    spec_for_data,
    supervised,
)
from selfsup.models.io import load_backbone, normalizer


def binary_digits(n_train: int, n_test: int) -> tuple[ImageSet, ImageSet]:
    splits = load_data("digits")

    def pick(s: ImageSet, n: int) -> ImageSet:
        keep = (s.labels <= 1).nonzero().flatten()[:n]
        return ImageSet(s.images[keep], s.labels[keep], ["0", "1"])

    return pick(splits.train, n_train), pick(splits.test, n_test)


def test_spec_for_data_and_scratch_config():
    train, _ = binary_digits(50, 10)
    spec = spec_for_data("vit-cpu", train)
    assert (spec.name, spec.img_size, spec.in_chans, spec.patch_size) == ("vit-cpu", 28, 1, None)
    assert spec.mean[0] == pytest.approx(train.images.float().mean().item() / 255, rel=1e-4)
    cfg = scratch_config(FinetuneConfig(layer_decay=0.5, epochs=3))
    assert cfg.layer_decay == 1.0 and cfg.head_init_std == 0.02 and cfg.epochs == 3


def test_random_backbone_is_seeded_and_leaves_the_global_rng_alone():
    spec = spec_for_data("vit-cpu", binary_digits(20, 4)[0])
    rng = torch.random.get_rng_state()
    a, b, c = random_backbone(spec, 1), random_backbone(spec, 1), random_backbone(spec, 2)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.equal(a.pos_embed, b.pos_embed) and not torch.equal(a.pos_embed, c.pos_embed)


def test_labelled_subset_is_stratified():
    labels = torch.tensor([0] * 40 + [1] * 20)
    train = ImageSet(torch.zeros(60, 1, 4, 4, dtype=torch.uint8), labels)
    idx = labelled_subset(train, 0.25, seed=0)
    assert labels[idx].bincount().tolist() == [10, 5]
    assert labelled_subset(train, 1.0) is None


def test_supervised_learns_from_scratch_and_saves_a_run(tmp_path):
    train, test = binary_digits(200, 100)
    spec = spec_for_data("vit-cpu", train)
    cfg = FinetuneConfig(epochs=10, batch_size=32, blr=8e-3, flip=0.0)
    result = supervised(spec, train, test, cfg, out=tmp_path / "sup", data="digits")
    assert result["top1"] >= 85.0  # chance is about 50%
    assert result["init"] == "random" and result["fraction"] == 1.0 and result["n_labelled"] == 200
    assert result["settings"]["layer_decay"] == 1.0 and result["settings"]["head_init_std"] == 0.02

    backbone, saved = load_backbone(tmp_path / "sup" / "backbone.safetensors")
    assert saved == spec
    assert json.loads((tmp_path / "sup" / "supervised.json").read_text())["top1"] == result["top1"]
    assert run_info(tmp_path / "sup") == {"method": "supervised", "data": "digits"}  # what eval reads
    assert not torch.equal(backbone.pos_embed, random_backbone(spec, 0).pos_embed)  # trained weights
    feats = extract_features(backbone, test.images, normalize=normalizer(saved))  # usable by the protocols
    assert feats.shape == (len(test), 128)


def test_supervised_on_a_fraction():
    train, test = binary_digits(40, 10)
    spec = spec_for_data("vit-cpu", train)
    result = supervised(spec, train, test, FinetuneConfig(epochs=1, batch_size=4), fraction=0.25, seed=1)
    assert result["n_labelled"] == 10 and result["fraction"] == 0.25 and result["steps"] == 2
    assert "run" not in result
    with pytest.raises(ValueError, match="fraction"):
        supervised(spec, train, test, fraction=0.0)
