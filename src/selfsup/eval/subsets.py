"""Stratified label subsets: the few-shot training sets (1% / 10% of the labels, as in SimCLR and BYOL's
semi-supervised tables) and the validation split that a hyper-parameter sweep is chosen on.

Both draw, separately for every class, a random permutation from a generator seeded with `seed`, so a
subset holds the asked share of every class, is the same for the same seed and labels, and differs
between seeds. SimCLR uses one fixed list of ImageNet images per fraction; here `seed` picks the list, and
few-shot protocols report the mean and standard deviation over several seeds.
"""

from __future__ import annotations

import torch

from selfsup.data import Splits


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)} {labels.dtype}")
    if len(labels) == 0:
        raise ValueError("labels is empty: nothing to draw from")
    return labels.long()


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def _per_class_draw(labels: torch.Tensor, counts: dict[int, int], seed: int) -> torch.Tensor:
    """Sorted indices of `counts[c]` random members of each class c: (n,) labels -> (sum counts,) int64."""
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in sorted(counts):
        members = (labels == c).nonzero().flatten()  # (n_c,)
        picked.append(members[torch.randperm(len(members), generator=g)[:counts[c]]])
    return torch.cat(picked).sort().values


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a random subset with round(fraction * n_c) (Python's round, half to even), but at least 1,
    images of each class c.

    (n,) integer labels -> (m,) sorted int64 indices into them. Deterministic for a given `seed`.
    """
    labels = _check_labels(labels)
    _check_fraction(fraction)
    classes, sizes = labels.unique(return_counts=True)
    counts = {int(c): max(1, round(fraction * int(n))) for c, n in zip(classes, sizes, strict=True)}
    return _per_class_draw(labels, counts, seed)


def validation_split(labels: torch.Tensor, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train_idx, val_idx) split of (n,) labels: round(fraction * n_c) images of each class go to
    validation, at least 1 and never the last one, so every class keeps at least one training image (a
    class with a single image stays in train only). Both are sorted int64 indices; together they cover
    0 .. n-1 exactly once.
    """
    labels = _check_labels(labels)
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    classes, sizes = labels.unique(return_counts=True)
    counts = {int(c): min(int(n) - 1, max(1, round(fraction * int(n)))) for c, n in zip(classes, sizes, strict=True)}
    val = _per_class_draw(labels, counts, seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def holdout_splits(splits: Splits, fraction: float, seed: int = 0) -> Splits:
    """The training set split into a smaller train and a stratified validation set that takes the test
    split's place (the test images are dropped, so nothing downstream can read them)."""
    if splits.train.labels is None:
        raise ValueError(f"{splits.name} has no labels: a held-out validation split needs them")
    train_idx, val_idx = validation_split(splits.train.labels, fraction, seed)
    return Splits(f"{splits.name} (held-out {fraction:g} of train)", splits.train.subset(train_idx),
                  splits.train.subset(val_idx), splits.notice)


__all__ = ["holdout_splits", "stratified_subset", "validation_split"]
