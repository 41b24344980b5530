"""The k-NN protocol on a dataset's own train/test split (DINO's eval_knn.py): `knn_eval` on images, and
`knn_protocol` for `selfsup eval knn` on cached features (several k at once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfsup.data import Splits
from selfsup.eval.adapt import adapt_splits
from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.features import extract_features
from selfsup.eval.knn import KnnResult, knn_classify
from selfsup.models.io import BackboneSpec, normalizer
from selfsup.options import opt


def knn_eval(backbone: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor] | None, splits: Splits,
             device: torch.device | str = "cpu", k: int = 20, temperature: float = 0.07,
             batch_size: int = 512) -> KnnResult:
    """Features of the train and test images (no augmentation) -> weighted k-NN top-1 on test.

    For the raw-pixel baseline pass `nn.Flatten()` as the backbone and no `prepare`.
    """
    if splits.test is None or splits.test.labels is None or splits.train.labels is None:
        raise ValueError(f"{splits.name} has no labelled test split: k-NN needs labels for train and test")
    train = extract_features(backbone, splits.train.images, batch_size, device, prepare)
    test = extract_features(backbone, splits.test.images, batch_size, device, prepare)
    # the bank on the device, the test rows in chunks (knn.py): no (M, N) block on the host
    return knn_classify(train.to(device), splits.train.labels, test, splits.test.labels, k=k, temperature=temperature,
                        num_classes=splits.train.num_classes)


def knn_of_weights(weights: nn.Module, spec: BackboneSpec, splits: Splits,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """k-NN (as knn_eval) of a backbone with `weights`' state, read through `spec`'s evaluated feature
    (spec.pool) and normalisation, on `splits` adapted to the backbone's input channels and size."""
    backbone = spec.build().to(device)
    backbone.load_state_dict(weights.state_dict())
    splits = adapt_splits(splits, spec.in_chans, splits.train.size)[0]  # colorization: 1 channel
    return knn_eval(backbone, normalizer(spec), splits, device).as_dict()


@dataclass
class KnnOptions:
    """Options of `selfsup eval knn` (DINO eval_knn.py's values)."""

    k: list[int] = opt([20], "Neighbours that vote. Several values (--k 10 20 100) reuse the same features. DINO "
                       "reports k=20 (10 to 200 differ by under a point on ImageNet); use smaller k for train "
                       "sets with few images per class.", paper=[20], low=1)
    temperature: float = opt(0.07, "Votes are weighted by exp(cosine similarity / T). Lower T lets the nearest "
                             "neighbours dominate; 0.07 is DINO's value and rarely worth tuning.", paper=0.07, above=0)


def knn_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Weighted k-NN top-1/top-5 of the frozen (cached) features of the test split against the train split.

    One k gives "top1"/"top5"; several give "top1_k10", "top5_k10", ... for each k.
    """
    opts = ctx.options or KnnOptions()
    ks = [opts.k] if isinstance(opts.k, int) else list(opts.k)
    if not ks or min(ks) < 1:
        raise EvalError(f"--k must list positive neighbour counts, got {ks}")
    if not opts.temperature > 0:
        raise EvalError(f"--temperature must be > 0, got {opts.temperature}")
    train_x, train_y = ctx.features("train")
    test_x, test_y = ctx.features("test")
    train_x, test_x = train_x.to(ctx.device), test_x.to(ctx.device)
    results = [knn_classify(train_x, train_y, test_x, test_y, k=k, temperature=opts.temperature,
                            num_classes=ctx.num_classes) for k in ks]
    if len(ks) == 1:
        numbers = {"top1": results[0].top1, "top5": results[0].top5}
    else:
        numbers = {f"top{t}_k{k}": getattr(r, f"top{t}") for k, r in zip(ks, results, strict=True) for t in (1, 5)}
    settings = {"k_effective": [r.k for r in results], "n_train": len(train_x), "n_test": len(test_x)}
    return {**numbers, "settings": settings}
