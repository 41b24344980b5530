"""Semi-supervised self-training with confident pseudo-labels (Lee, 2013; the hard-label, fixed-threshold
variant that FixMatch also uses, Sohn et al., 2020).

1. Fine-tune the backbone on the labelled fraction of the training set (`finetune`).
2. Predict the unlabelled rest without augmentation; keep each prediction whose softmax confidence is at
   least `threshold` as a hard pseudo-label.
3. Fine-tune the same pre-trained backbone again (not the step-1 model, so its mistakes are not simply
   reinforced) on labelled + pseudo-labelled images with the same recipe, and report both test
   accuracies, how many pseudo-labels were added and how many of them are right (the true labels of the
   "unlabelled" images are known here and used for that count only).

The threshold defaults to 0.95, FixMatch's value (Sohn et al., 2020, tau = 0.95): high enough that the
added labels are mostly right, at the cost of adding few of them when the first model is unsure. Label
smoothing is turned off in both stages (FixMatch uses none): smoothing eps over K classes teaches the model
a confidence of at most 1 - eps + eps / K (0.91 for eps = 0.1 and 10 classes), below any useful threshold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfsup.data import ImageSet
from selfsup.eval.context import EvalContext
from selfsup.eval.finetune import FinetuneConfig, Prepare, as_prepare, fit_and_evaluate, predict_proba
from selfsup.eval.subsets import stratified_subset
from selfsup.models.io import BackboneSpec
from selfsup.options import opt

DEFAULT_THRESHOLD = 0.95  # FixMatch (Sohn et al., 2020): confidence threshold tau = 0.95


@dataclass
class PseudolabelOptions(FinetuneConfig):
    """Options of `selfsup eval pseudolabel`: the fine-tuning recipe (label smoothing is turned off) plus the
    labelled fraction and the confidence threshold."""

    epochs: float = opt(30.0, "Fine-tuning epochs of each stage. The labelled fraction is a few batches per "
                        "epoch, so it needs more epochs than full fine-tuning (as fewshot's --finetune-epochs).",
                        paper=100, above=0)
    smoothing: float = opt(0.0, "Not used: both stages train without label smoothing, which would cap the "
                           "confidence a model learns at 1 - eps + eps / K (0.91 for eps 0.1 and 10 classes), "
                           "below the threshold.", paper=0.0, low=0, below=1)
    fraction: float = opt(0.1, "Share of each class's training labels kept (stratified, seeded by --seed); the "
                          "rest are treated as unlabelled.", paper=0.1, above=0, high=1)
    threshold: float = opt(DEFAULT_THRESHOLD, "Softmax confidence a prediction needs to become a pseudo-label. "
                           "Lower it (0.8-0.9) when few predictions pass; the result reports how many were "
                           "added and how many of them were right.", paper=DEFAULT_THRESHOLD, above=0, high=1)


def select_confident(probs: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose top class probability is >= threshold: (N, C) probabilities -> (indices (K,), labels (K,))."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, num_classes), got shape {tuple(probs.shape)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    conf, pred = probs.max(dim=1)  # (N,), (N,)
    keep = (conf >= threshold).nonzero().flatten()  # (K,)
    return keep, pred[keep]


def complement(n: int, idx: torch.Tensor) -> torch.Tensor:
    """Sorted indices of 0 .. n-1 not in `idx`."""
    mask = torch.ones(n, dtype=torch.bool)
    mask[idx] = False
    return mask.nonzero().flatten()


def pseudo_labelled_set(train: ImageSet, labelled_idx: torch.Tensor, pseudo_idx: torch.Tensor,
                        pseudo_labels: torch.Tensor) -> ImageSet:
    """The labelled images with their true labels followed by the pseudo-labelled ones."""
    images = torch.cat([train.images[labelled_idx], train.images[pseudo_idx]])
    labels = torch.cat([train.labels[labelled_idx], pseudo_labels.to(train.labels.dtype)])
    return ImageSet(images, labels, train.classes)


def pseudo_label(model: nn.Module, prepare: Prepare, train: ImageSet, unlabelled_idx: torch.Tensor,
                 threshold: float, batch_size: int = 512, device: str | torch.device = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train indices (K,) and predicted labels (K,) of the confident predictions on the unlabelled images,
    and the confidence (top softmax probability) of every unlabelled image (U,)."""
    probs = predict_proba(model, prepare, train.images[unlabelled_idx], batch_size, device)  # (U, C)
    keep, labels = select_confident(probs, threshold)
    return unlabelled_idx[keep], labels, probs.max(dim=1).values


def pseudolabel(backbone: nn.Module, spec_or_normalizer: BackboneSpec | Prepare | None, train: ImageSet,
                test: ImageSet, cfg: FinetuneConfig | None = None, fraction: float = 0.1,
                threshold: float = DEFAULT_THRESHOLD, device: str | torch.device = "cpu", seed: int = 0,
                labelled_idx: torch.Tensor | None = None) -> dict:
    """Self-training on a stratified `fraction` of the labels (or the given `labelled_idx`).

    Returns {"top1": after self-training, "top1_labelled_only", "gain", "n_labelled", "n_unlabelled",
    "n_pseudo", "pseudo_accuracy" (percent of added labels that are right; None when none are added),
    "median_confidence" (of the first model on the unlabelled images: lower the threshold towards it when
    few pass),
    "threshold", "fraction", "labelled_only": its finetune dict, "retrained": its finetune dict or None}.
    When no prediction reaches the threshold, nothing is retrained and top1 is the labelled-only top-1.
    Both stages use `cfg` without label smoothing (see the module docstring).
    """
    if train.labels is None:
        raise ValueError("the training set has no labels: pseudo-labelling is scored against them")
    cfg = dataclasses.replace(cfg or FinetuneConfig(), smoothing=0.0)
    prepare = as_prepare(spec_or_normalizer)
    lab = stratified_subset(train.labels, fraction, seed) if labelled_idx is None else torch.as_tensor(labelled_idx)
    rest = complement(len(train), lab)
    first, first_result = fit_and_evaluate(backbone, prepare, train, test, cfg, device, lab, seed)
    idx, labels, conf = pseudo_label(first.model, prepare, train, rest, threshold, cfg.eval_batch_size, device)
    del first
    retrained = None
    if len(idx):
        combined = pseudo_labelled_set(train, lab, idx, labels)
        _, retrained = fit_and_evaluate(backbone, prepare, combined, test, cfg, device, None, seed)
    top1 = retrained["top1"] if retrained else first_result["top1"]
    right = float((labels == train.labels[idx]).float().mean()) * 100 if len(idx) else None
    return {"top1": top1, "top1_labelled_only": first_result["top1"], "gain": top1 - first_result["top1"],
            "n_labelled": len(lab), "n_unlabelled": len(rest), "n_pseudo": len(idx), "pseudo_accuracy": right,
            "median_confidence": float(conf.median()) if len(conf) else None,
            "threshold": threshold, "fraction": len(lab) / len(train), "labelled_only": first_result,
            "retrained": retrained}



def pseudolabel_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Top-1 after self-training next to the labelled-only top-1, with the pseudo-label count and accuracy."""
    ctx.require_backbone()
    opts = ctx.options or PseudolabelOptions()
    r = pseudolabel(ctx.backbone, ctx.prepare, ctx.labelled("train"), ctx.labelled("test"), opts, opts.fraction,
                    opts.threshold, ctx.device, ctx.seed)
    first, second = r.pop("labelled_only"), r.pop("retrained")
    r.pop("threshold")
    r["settings"] = {**first["settings"], "threshold": opts.threshold, "fraction": opts.fraction,
                     "labelled_only_steps": first["steps"], "retrained_steps": second["steps"] if second else 0,
                     "minutes": first["minutes"] + (second["minutes"] if second else 0.0)}
    r["top5"] = (second or first)["top5"]
    return r


__all__ = ["DEFAULT_THRESHOLD", "PseudolabelOptions", "complement", "pseudo_label", "pseudo_labelled_set",
           "pseudolabel", "pseudolabel_protocol", "select_confident"]
