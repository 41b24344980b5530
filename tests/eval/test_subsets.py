import pytest
import torch

from selfsup.eval.subsets import stratified_subset, validation_split

# class sizes 100, 37, 5, 1 and 2, shuffled
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate([100, 37, 5, 1, 2])])
LABELS = LABELS[torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(0))]


def per_class(idx: torch.Tensor) -> list[int]:
    return torch.bincount(LABELS[idx], minlength=5).tolist()


@pytest.mark.parametrize(("fraction", "expected"), [
    (0.1, [10, 4, 1, 1, 1]),  # round(3.7) = 4; round(0.5) = 0 and round(0.1) = 0 become 1
    (0.01, [1, 1, 1, 1, 1]),
    (0.5, [50, 18, 2, 1, 1]),  # round() as Python does: 18.5 -> 18, 2.5 -> 2
    (1.0, [100, 37, 5, 1, 2]),
])
def test_exact_share_of_every_class(fraction, expected):
    idx = stratified_subset(LABELS, fraction, seed=0)
    assert per_class(idx) == expected
    assert idx.dtype == torch.int64 and torch.equal(idx, idx.unique())  # sorted, no repeats


def test_deterministic_per_seed_and_different_across_seeds():
    a, b = stratified_subset(LABELS, 0.1, seed=1), stratified_subset(LABELS, 0.1, seed=1)
    assert torch.equal(a, b)
    subsets = [set(stratified_subset(LABELS, 0.1, seed=s).tolist()) for s in range(5)]
    assert all(subsets[i] != subsets[j] for i in range(5) for j in range(i + 1, 5))


def test_validation_split_partitions_train_and_keeps_every_class():
    train, val = validation_split(LABELS, 0.1, seed=0)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(LABELS)))
    assert per_class(val) == [10, 4, 1, 0, 1]  # the 1-image class stays in train; the 2-image class gives 1
    assert all(n >= 1 for n in per_class(train))
    assert not torch.equal(val, validation_split(LABELS, 0.1, seed=1)[1])


@pytest.mark.parametrize(("call", "match"), [
    (lambda: stratified_subset(LABELS, 0.0, 0), "fraction"),
    (lambda: stratified_subset(LABELS, 1.5, 0), "fraction"),
    (lambda: stratified_subset(LABELS.float(), 0.1, 0), "integer"),
    (lambda: stratified_subset(torch.zeros(0, dtype=torch.long), 0.1, 0), "empty"),
    (lambda: validation_split(LABELS, 1.0), "validation fraction"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_holdout_replaces_the_test_split_with_a_stratified_share_of_train():
    from selfsup.data import ImageSet, Splits
    from selfsup.eval.subsets import holdout_splits

    images = torch.arange(len(LABELS), dtype=torch.uint8).view(-1, 1, 1, 1)
    test = ImageSet(torch.zeros(4, 1, 1, 1, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    held = holdout_splits(Splits("toy", ImageSet(images, LABELS), test), 0.1, seed=0)
    _, val = validation_split(LABELS, 0.1, seed=0)
    assert torch.equal(held.test.labels, LABELS[val]) and torch.equal(held.test.images.flatten(), images[val].flatten())
    assert len(held.train) + len(held.test) == len(LABELS)  # the original test images are gone
    assert not set(held.train.images.flatten().tolist()) & set(held.test.images.flatten().tolist())
