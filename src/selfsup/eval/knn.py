"""Weighted k-NN classifier on frozen features, as in DINO's eval_knn.py (Wu et al., 2018).

Features are L2-normalised; each test sample takes its k most cosine-similar train samples, each of which
votes for its own label with weight exp(sim / T); the prediction is the label with the largest summed vote.
Test rows are processed in chunks so that the (chunk, n_train) similarity block stays bounded (~256 MB).

The protocol: `knn_eval` on a dataset's own train/test images (the engine's k-NN during pre-training, the
demo), and `knn_protocol` for `selfsup eval knn` on the context's (cached) features, several k at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import Splits
from selfsup.eval.adapt import adapt_splits
from selfsup.eval.context import EvalContext
from selfsup.eval.features import extract_features
from selfsup.models.io import BackboneSpec, normalizer
from selfsup.options import opt

CHUNK_BYTES = 256 * 2**20  # budget for one float32 (chunk, n_train) similarity block


@dataclass
class KnnResult:
    """Accuracies in percent; `top5` is None when there are fewer than 5 classes; `k` is the effective k."""

    top1: float
    top5: float | None
    k: int
    temperature: float
    n_train: int
    n_test: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass
class _Setup:
    train: torch.Tensor  # (N, D) float32, unit rows
    test: torch.Tensor  # (M, D) as given (normalised chunk by chunk)
    labels: torch.Tensor  # (N,) int64
    k: int
    temperature: float
    num_classes: int
    chunk_size: int


def default_chunk_size(n_train: int, num_classes: int) -> int:
    """Test rows per chunk so that a float32 (chunk, max(n_train, num_classes)) block is ~<= 256 MB."""
    return max(1, CHUNK_BYTES // (4 * max(n_train, num_classes, 1)))


def _as_features(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a 2-D (n, dim) float tensor, got shape {tuple(x.shape)} {x.dtype}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x


def _as_labels(y: torch.Tensor, n: int, name: str, features_name: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer tensor, got shape {tuple(y.shape)} {y.dtype}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but {features_name} has {n} rows")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got min {int(y.min())}")
    return y.long()


def _setup(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, k: int,
           temperature: float, num_classes: int | None, chunk_size: int | None) -> _Setup:
    """Validate the inputs and build the normalised train bank."""
    train = _as_features(train_features, "train_features")
    test = _as_features(test_features, "test_features")
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"test_features has dim {test.shape[1]} but train_features has dim {train.shape[1]}")
    labels = _as_labels(train_labels, len(train), "train_labels", "train_features").to(train.device)
    _check_scalars(k, temperature, chunk_size)
    n_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.max()) >= n_classes:
        raise ValueError(f"train_labels has class {int(labels.max())} but num_classes is {n_classes}")
    chunk = chunk_size or default_chunk_size(len(train), n_classes)
    return _Setup(F.normalize(train.float(), dim=1), test, labels, min(k, len(train)), float(temperature),
                  n_classes, chunk)


def _check_scalars(k: int, temperature: float, chunk_size: int | None) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def _votes(s: _Setup, test_chunk: torch.Tensor) -> torch.Tensor:
    """(b, D) test features -> (b, num_classes) summed exp(sim / T) votes of the k nearest train samples."""
    q = F.normalize(test_chunk.to(s.train.device).float(), dim=1)  # (b, D)
    sim = q @ s.train.T  # (b, N) cosine similarities
    top_sim, top_idx = sim.topk(s.k, dim=1)  # (b, k)
    weights = top_sim.div_(s.temperature).exp_()  # (b, k)
    votes = torch.zeros(len(q), s.num_classes, device=q.device)  # (b, C)
    return votes.scatter_add_(1, s.labels[top_idx], weights)  # (b, C)


def _chunked_votes(s: _Setup) -> Iterator[tuple[slice, torch.Tensor]]:
    """(row slice, (b, num_classes) votes) for each chunk of test rows."""
    for start in range(0, len(s.test), s.chunk_size):
        rows = slice(start, start + s.chunk_size)
        yield rows, _votes(s, s.test[rows])


@torch.inference_mode()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk_size: int | None = None) -> torch.Tensor:
    """Weighted k-NN predicted labels: (N, D), (N,), (M, D) -> (M,) int64 on the train features' device.

    Ties between classes go to the lowest class index.
    """
    s = _setup(train_features, train_labels, test_features, k, temperature, num_classes, chunk_size)
    return torch.cat([votes.argmax(dim=1) for _, votes in _chunked_votes(s)])


@torch.inference_mode()
def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20, temperature: float = 0.07,
                 num_classes: int | None = None, chunk_size: int | None = None) -> KnnResult:
    """Weighted k-NN accuracy of test on train: top-1 and (with >= 5 classes) top-5, in percent.

    `k` larger than the train set is clipped to its size (the result reports the effective k).
    `num_classes` defaults to max(train_labels) + 1; test labels outside it simply count as errors.
    Top-5 counts only classes that received votes, as DINO's top-min(5, k).
    """
    s = _setup(train_features, train_labels, test_features, k, temperature, num_classes, chunk_size)
    n = len(s.test)
    targets = _as_labels(test_labels, n, "test_labels", "test_features").to(s.train.device)
    top5_k = min(5, s.num_classes)
    hits1 = hits5 = 0
    for rows, votes in _chunked_votes(s):
        y = targets[rows, None]  # (b, 1)
        hits1 += int((votes.argmax(dim=1, keepdim=True) == y).sum())
        best, best_idx = votes.topk(top5_k, dim=1)  # (b, 5)
        hits5 += int(((best_idx == y) & (best > 0)).any(dim=1).sum())
    return KnnResult(top1=100.0 * hits1 / n, top5=100.0 * hits5 / n if s.num_classes >= 5 else None, k=s.k,
                     temperature=s.temperature, n_train=len(s.train), n_test=n)


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
    ks = [opts.k] if isinstance(opts.k, int) else list(opts.k)  # checked against its declaration (run_protocol)
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


__all__ = ["KnnOptions", "KnnResult", "default_chunk_size", "knn_classify", "knn_eval", "knn_of_weights",
           "knn_predict", "knn_protocol"]
