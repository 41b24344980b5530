import pytest
import torch

from selfsup.data import ImageSet, load_data
from selfsup.data.views import channel_stats
from selfsup.eval.finetune import FinetuneConfig, as_prepare, predict_proba, train_classifier
from selfsup.eval.pseudolabel import (
    complement,
    pseudo_label,
    pseudo_labelled_set,
    pseudolabel,
    select_confident,
)
from selfsup.models.io import BackboneSpec


def binary_digits(n_train: int, n_test: int) -> tuple[ImageSet, ImageSet]:
    splits = load_data("digits")

    def pick(s: ImageSet, n: int) -> ImageSet:
        keep = (s.labels <= 1).nonzero().flatten()[:n]
        return ImageSet(s.images[keep], s.labels[keep], ["0", "1"])

    return pick(splits.train, n_train), pick(splits.test, n_test)


def setup(n_train: int = 200, n_test: int = 60):
    train, test = binary_digits(n_train, n_test)
    mean, std = channel_stats(train.images)
    spec = BackboneSpec("vit-cpu", 28, 1, None, mean, std)
    torch.manual_seed(0)
    return spec.build(), spec, train, test


# Enough from-scratch training on 100 labels for confident predictions (without smoothing, as pseudolabel does).
CFG = FinetuneConfig(epochs=8, batch_size=20, blr=8e-3, flip=0.0, layer_decay=1.0, head_init_std=0.02)


def test_selection_keeps_exactly_the_rows_at_or_above_the_threshold():
    probs = torch.tensor([[0.95, 0.05, 0.0],  # exactly at the threshold: kept
                          [0.9499, 0.0501, 0.0],  # just below: dropped
                          [0.01, 0.02, 0.97],  # kept as class 2
                          [0.4, 0.3, 0.3],
                          [0.0, 1.0, 0.0]])
    idx, labels = select_confident(probs, 0.95)
    assert idx.tolist() == [0, 2, 4] and labels.tolist() == [0, 2, 1]
    assert select_confident(probs, 0.99)[0].tolist() == [4]
    none = select_confident(probs[[1, 3]], 0.95)
    assert len(none[0]) == 0 and len(none[1]) == 0


def test_selection_never_keeps_a_row_below_the_threshold_on_random_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = (4 * torch.randn(2000, 10, generator=g)).softmax(dim=1)
    for threshold in (0.5, 0.8, 0.95):
        idx, labels = select_confident(probs, threshold)
        conf = probs.max(dim=1).values
        kept = torch.zeros(len(probs), dtype=torch.bool)
        kept[idx] = True
        assert 0 < len(idx) < len(probs)  # a non-trivial split
        assert (conf[kept] >= threshold).all() and (conf[~kept] < threshold).all()
        assert torch.equal(labels, probs[idx].argmax(dim=1))


def test_selection_refuses_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        select_confident(torch.rand(3, 2), 0.0)
    with pytest.raises(ValueError, match="num_classes"):
        select_confident(torch.rand(3), 0.5)


def test_complement_and_combined_set():
    assert complement(6, torch.tensor([4, 1])).tolist() == [0, 2, 3, 5]
    train = ImageSet(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1), torch.tensor([0, 1, 0, 1, 0, 1]))
    combined = pseudo_labelled_set(train, torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([0, 0]))
    assert combined.images.flatten().tolist() == [0, 1, 3, 4]
    assert combined.labels.tolist() == [0, 1, 0, 0]  # true labels first, then the pseudo-labels as predicted


def test_pseudo_labels_of_a_trained_model_all_reach_the_threshold():
    backbone, spec, train, _ = setup()
    labelled = torch.arange(0, 200, 2)
    res = train_classifier(backbone, as_prepare(spec), train.images[labelled], train.labels[labelled], 2, CFG)
    rest = complement(200, labelled)
    probs = predict_proba(res.model, as_prepare(spec), train.images[rest])  # (100, 2)
    for threshold in (0.6, 0.9):
        idx, labels, conf = pseudo_label(res.model, as_prepare(spec), train, rest, threshold)
        expected = (probs.max(dim=1).values >= threshold).sum()
        assert len(idx) == expected > 0 and torch.allclose(conf, probs.max(dim=1).values)
        assert (conf[torch.isin(rest, idx)] >= threshold).all() and (conf[~torch.isin(rest, idx)] < threshold).all()
        assert set(idx.tolist()) <= set(rest.tolist())
        assert torch.equal(labels, probs.argmax(dim=1)[probs.max(dim=1).values >= threshold])


def test_self_training_run_reports_both_rows():
    backbone, spec, train, test = setup()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = pseudolabel(backbone, spec, train, test, CFG, fraction=0.5, threshold=0.8)
    assert result["n_labelled"] == 100 and result["n_unlabelled"] == 100 and result["fraction"] == 0.5
    assert 0 < result["n_pseudo"] <= 100 and 50 <= result["pseudo_accuracy"] <= 100
    assert 0.5 <= result["median_confidence"] <= 1
    assert result["retrained"]["n_train"] == 100 + result["n_pseudo"]
    assert result["top1"] == result["retrained"]["top1"]
    assert result["gain"] == pytest.approx(result["top1"] - result["top1_labelled_only"])
    assert result["labelled_only"]["settings"]["smoothing"] == 0.0 and result["threshold"] == 0.8
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_nothing_confident_means_no_retraining():
    backbone, spec, train, test = setup(40, 10)
    cfg = FinetuneConfig(epochs=1, batch_size=20)  # 1 step from a 2e-5 head: every prediction is near 50/50
    result = pseudolabel(backbone, spec, train, test, cfg, labelled_idx=torch.arange(20), threshold=0.95)
    assert result["n_pseudo"] == 0 and result["pseudo_accuracy"] is None and result["retrained"] is None
    assert result["top1"] == result["top1_labelled_only"] and result["n_unlabelled"] == 20
