"""End-to-end fine-tuning with labels: the backbone plus a linear head, all weights trained.

The recipe is MAE's `main_finetune.py` (He et al., 2022), itself BEiT's: AdamW, linear warm-up then cosine
decay per step, layer-wise learning-rate decay, stochastic depth, label smoothing. Defaults are scaled down
for a 2-core CPU and 28-32 px images (fewer epochs, smaller batch, shorter warm-up, lighter augmentation);
each option's help gives the paper's value and says when to move towards it. MAE also uses RandAugment,
mixup, cutmix and random erasing: they pay off over 100 ImageNet epochs, not over a few CPU epochs on
tiny images, so only kornia's random-resized crops and flips are offered here.

CPU defaults and why: 10 epochs (MAE: 100 for ViT-B) and batch 128 (MAE: 1024) give Fashion-MNIST's 60,000
images about 4,700 steps; a 1-epoch warm-up keeps MAE's 5-10% share of the run. Training images are only
flipped (p = 0.5; set 0 where orientation carries the label): random-resized crops (MAE: area 0.08-1) cost
4-10 points at these budgets, where the small model underfits (measured: see `crop_scale`). After training,
BatchNorm statistics are recomputed (`precise_bn.py`) so that short ResNet runs evaluate correctly.

`finetune(..., train_idx=subset)` fine-tunes on a labelled subset (few-shot / semi-supervised rows).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import ImageSet
from selfsup.data.views import cropping_mode
from selfsup.eval.context import EvalContext
from selfsup.eval.layer_decay import find_vit, param_groups
from selfsup.eval.precise_bn import recompute_bn_stats
from selfsup.models.io import BackboneSpec, normalizer
from selfsup.options import opt
from selfsup.schedules import cosine_schedule

VIT_LAYER_DECAY = 0.65  # MAE FINETUNE.md, ViT-B (0.75 for ViT-L, main_finetune.py's default); BEiT's ViT-B
CALIBRATION_STEPS = 5  # steps timed before a --minutes budget fixes the step count

Prepare = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FinetuneConfig:
    epochs: float = opt(10.0, "Fine-tuning epochs over the labelled images (fractions allowed). More helps "
                        "until the test accuracy saturates; small sets and few-shot subsets need more epochs "
                        "(each epoch is only a few steps: aim for several hundred steps).", paper=100, above=0)
    minutes: float | None = opt(None, "Optional wall-clock budget for training: after a few timed steps "
                                "the step count is cut so that the schedule ends in time (never extended "
                                "beyond --epochs).", above=0)
    batch_size: int = opt(128, "Batch size (capped at the number of labelled images). Smaller batches give "
                          "more steps per epoch, which helps short CPU budgets.", paper=1024, low=2)
    blr: float = opt(1e-3, "Base learning rate at batch 256; the peak rate is blr x batch / 256 (MAE's "
                     "main_finetune.py default; its ViT-B recipe uses 5e-4). Lower it if accuracy drops after "
                     "warm-up; short runs learn faster with more (DINO vit-cpu, 5,000 Fashion-MNIST images: "
                     "4e-3 gained 9 points over 1e-3 at 5 epochs, 1 point at 20).", paper=1e-3, above=0)
    min_lr: float = opt(1e-6, "Learning rate at the end of the cosine decay.", paper=1e-6, low=0)
    warmup_epochs: float = opt(1.0, "Linear warm-up epochs (kept at this fraction of the run when --minutes "
                               "shortens it). About 5-10% of the run.", paper=5, low=0)
    weight_decay: float = opt(0.05, "AdamW weight decay (biases, norms, pos_embed and cls_token excluded).",
                              paper=0.05, low=0)
    layer_decay: float | None = opt(None, "Layer-wise learning-rate decay for ViTs: block i of L trains at "
                                    "decay^(L+1-(i+1)) of the head's rate. Default: 0.65 for ViTs (MAE's ViT-B "
                                    "value; 0.75 for ViT-L), 1.0 (none) for ResNets and random "
                                    "initialisation. Raise towards 1 when the pre-trained features are weak.",
                                    paper=0.75, above=0, high=1)
    drop_path: float = opt(0.1, "Stochastic-depth rate of the last ViT block (linear from 0 over the blocks); "
                           "ResNets have none. Raise (0.2) for larger models or longer runs.", paper=0.1,
                           low=0, below=1)
    smoothing: float = opt(0.1, "Label smoothing of the cross-entropy.", paper=0.1, low=0, below=1)
    crop_scale: tuple[float, float] = opt((1.0, 1.0), "Area range of random-resized training crops; (1, 1): "
                                          "none. At CPU budgets the small model underfits and crops only slow it "
                                          "down (DINO vit-cpu, 5,000 Fashion-MNIST images, 20 epochs: no crop "
                                          "82.4%, (0.6, 1) 78.0%). Try (0.35, 1) for long runs whose training "
                                          "loss falls far below the test loss.", paper=(0.08, 1.0),
                                          above=0, high=1, ordered=True)
    flip: float = opt(0.5, "Horizontal-flip probability of training images. Set 0 where orientation carries "
                      "the label (digits, text).", paper=0.5, low=0, high=1)
    head_init_std: float = opt(2e-5, "Std of the new head's initial weights. MAE's tiny value keeps the "
                               "pre-trained features from being disturbed by a random head early on; training "
                               "from scratch learns faster with timm's 0.02 (the supervised baseline uses it).",
                               paper=2e-5, low=0)
    precise_bn: bool = opt(True, "Recompute BatchNorm statistics (ResNets) from up to 4096 un-augmented training "
                           "images after training, in batches of --batch-size; short runs otherwise evaluate with "
                           "stale running averages.")
    eval_batch_size: int = opt(512, "Batch size of the (un-augmented) test predictions; memory only.", low=1)


class Classifier(nn.Module):
    """Backbone + linear head: (B, C, H, W) -> (B, num_classes) logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, head_init_std: float = 2e-5) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)  # MAE: trunc_normal_(head.weight, std=2e-5)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, D) -> (B, num_classes)


def set_drop_path(model: nn.Module, rate: float) -> float:
    """Set the stochastic-depth rates of the ViT in `model` to linspace(0, rate, depth), as the ViT's own
    constructor does. Returns the rate applied: `rate` for a ViT, 0.0 for models without one (ResNets)."""
    found = find_vit(model)
    if found is None:
        return 0.0
    blocks = found[1].blocks
    for blk, r in zip(blocks, torch.linspace(0, rate, len(blocks)).tolist(), strict=True):
        blk.drop_path.p = r
    return rate


def resolve_layer_decay(cfg: FinetuneConfig, model: nn.Module) -> float:
    """cfg.layer_decay, or its default: 0.65 for ViTs, 1.0 for everything else."""
    if cfg.layer_decay is not None:
        return cfg.layer_decay
    return VIT_LAYER_DECAY if find_vit(model) is not None else 1.0


def as_prepare(spec_or_normalizer: BackboneSpec | Prepare | None) -> Prepare:
    """A BackboneSpec -> its normaliser; a callable as is; None -> identity (inputs stay in [0, 1])."""
    if isinstance(spec_or_normalizer, BackboneSpec):
        return normalizer(spec_or_normalizer)
    return spec_or_normalizer if spec_or_normalizer is not None else (lambda x: x)


def augmentation(cfg: FinetuneConfig, size: int, device: torch.device | str = "cpu") -> nn.Module:
    """Light training augmentation on [0, 1] floats: random-resized crop back to `size` (cut the way that suits
    `device`, data/views.py `cropping_mode`), optional flip."""
    ops: list[nn.Module] = []
    if tuple(cfg.crop_scale) != (1.0, 1.0):
        ops.append(K.RandomResizedCrop((size, size), scale=tuple(cfg.crop_scale),
                                       cropping_mode=cropping_mode(torch.device(device))))
    if cfg.flip > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.flip))
    return nn.Sequential(*ops)


@dataclass
class Plan:
    """Batches and steps of one run; `total_steps` and `warmup_steps` may shrink under a time budget."""

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    planned_steps: int = 0  # the --epochs plan, which a time budget never exceeds
    planned_warmup: int = 0

    @classmethod
    def make(cls, n: int, cfg: FinetuneConfig) -> Plan:
        batch = max(1, min(cfg.batch_size, n))
        per_epoch = max(1, n // batch)  # drop_last, as MAE's loader
        total = max(1, round(cfg.epochs * per_epoch))
        warm = min(total, round(cfg.warmup_epochs * per_epoch))
        return cls(batch, per_epoch, total, warm, cfg.blr * batch / 256, total, warm)

    def schedule(self, min_lr: float):
        return cosine_schedule(self.peak_lr, min_lr, self.total_steps, self.warmup_steps)

    def shrink(self, total: int) -> None:
        """Fewer steps than planned (a time budget): the warm-up keeps its fraction of the --epochs plan. The
        total may grow again, up to that plan, when a later measurement finds the steps faster."""
        total = min(total, self.planned_steps)
        self.warmup_steps = round(self.planned_warmup * total / self.planned_steps)
        self.total_steps = total


def is_time_check(step: int, steps_per_epoch: int) -> bool:
    """Whether a --minutes run re-measures its speed after `step` steps: at CALIBRATION_STEPS, then each time
    the count doubles, and at every epoch's end (the first steps are slow, so an early estimate is refined)."""
    q, r = divmod(step, CALIBRATION_STEPS)
    return (r == 0 and q > 0 and q & (q - 1) == 0) or step % steps_per_epoch == 0


def batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless (batch,) index tensors: a fresh permutation each epoch, the incomplete last batch dropped."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            yield perm[i:i + batch]


def steps_in_budget(plan_total: int, done: int, elapsed_s: float, minutes: float | None,
                    rate_s: float | None = None) -> int:
    """Total steps that fit the budget, given `done` steps took `elapsed_s` (never more than planned). The
    time left is spent at `rate_s` seconds per step when given (measured without the slow first step), else
    at the average so far."""
    if minutes is None or done == 0:
        return plan_total
    left = minutes * 60 - elapsed_s
    return max(done, min(plan_total, done + int(left / (rate_s or elapsed_s / done))))


def _train_step(model: Classifier, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float,
                smoothing: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_scale"]
    loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)  # x (B, C, H, W), y (B,)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@dataclass
class TrainResult:
    model: Classifier
    steps: int
    epochs: float
    minutes: float
    last_loss: float
    settings: dict


def train_classifier(backbone: nn.Module, prepare: Prepare, images: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, cfg: FinetuneConfig, device: str | torch.device = "cpu",
                     seed: int = 0) -> TrainResult:
    """Fine-tune a copy of `backbone` with a new linear head on uint8 `images` (N, C, H, W) with `labels` (N,).

    Seeds the head, the batch order, the augmentation and stochastic depth from `seed` without touching the
    caller's global RNG state. The caller's backbone is never modified.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need as many labels as images and at least one, got {len(images)} / {len(labels)}")
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = Classifier(copy.deepcopy(backbone), num_classes, cfg.head_init_std).to(device)
        res = _fit(model, prepare, images, labels, cfg, device, torch.Generator().manual_seed(seed))
    if cfg.precise_bn:  # in batches of training's size: the statistics must not depend on --eval-batch-size
        recompute_bn_stats(res.model, prepare, images, Plan.make(len(images), cfg).batch_size, device=device)
    return res


def _fit(model: Classifier, prepare: Prepare, images: torch.Tensor, labels: torch.Tensor, cfg: FinetuneConfig,
         device: str | torch.device, gen: torch.Generator) -> TrainResult:
    drop_path = set_drop_path(model, cfg.drop_path)
    layer_decay = resolve_layer_decay(cfg, model)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, layer_decay), lr=0.0)
    plan = Plan.make(len(images), cfg)
    aug = augmentation(cfg, images.shape[-1], device).to(device)
    lrs, step, loss, start = plan.schedule(cfg.min_lr), 0, math.nan, time.perf_counter()
    first = start
    model.train()
    for idx in batches(len(images), plan.batch_size, gen):
        if step >= plan.total_steps:
            break
        x = prepare(aug(images[idx].to(device).float().div_(255)))  # (B, C, S, S) normalised
        loss = _train_step(model, opt, x, labels[idx].to(device), float(lrs[step]), cfg.smoothing)
        step += 1
        first = time.perf_counter() if step == 1 else first  # the first step pays for allocation: not timed
        if cfg.minutes is not None and step > 1 and is_time_check(step, plan.steps_per_epoch):
            before, now = plan.total_steps, time.perf_counter()
            plan.shrink(steps_in_budget(plan.planned_steps, step, now - start, cfg.minutes,
                                        (now - first) / (step - 1)))
            lrs = plan.schedule(cfg.min_lr) if plan.total_steps != before else lrs
    model.eval()
    settings = {**asdict(cfg), "layer_decay": layer_decay, "drop_path": drop_path, "batch_size": plan.batch_size,
                "peak_lr": plan.peak_lr, "warmup_steps": plan.warmup_steps}
    return TrainResult(model, step, step / plan.steps_per_epoch, (time.perf_counter() - start) / 60, loss,
                       settings)


@torch.inference_mode()
def predict_proba(model: nn.Module, prepare: Prepare, images: torch.Tensor, batch_size: int = 512,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """Softmax class probabilities of uint8 images (N, C, H, W) -> (N, num_classes) float32 on the CPU,
    without augmentation, in eval mode (the model's training flag is restored)."""
    was_training = model.training
    model.eval()
    try:
        out = [model(prepare(images[i:i + batch_size].to(device).float().div_(255))).softmax(dim=1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)  # (N, num_classes)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
    """Top-1 and (with >= 5 classes) top-5 accuracy in percent of (N, C) scores against (N,) labels."""
    labels = labels.to(probs.device)
    top1 = 100.0 * float((probs.argmax(dim=1) == labels).float().mean())
    if probs.shape[1] < 5:
        return {"top1": top1, "top5": None}
    top5 = 100.0 * float((probs.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean())
    return {"top1": top1, "top5": top5}


def evaluate(model: nn.Module, prepare: Prepare, test: ImageSet, batch_size: int = 512,
             device: str | torch.device = "cpu") -> dict[str, float | None]:
    """Top-1 / top-5 of `model` on the labelled test set, without augmentation."""
    if test.labels is None:
        raise ValueError("the test set has no labels: fine-tuning accuracy needs a labelled test split")
    return accuracy(predict_proba(model, prepare, test.images, batch_size, device), test.labels)


def labelled(train: ImageSet, train_idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the training set, or of its `train_idx` rows."""
    if train.labels is None:
        raise ValueError("the training set has no labels: fine-tuning needs labelled images")
    if train_idx is None:
        return train.images, train.labels
    idx = torch.as_tensor(train_idx, dtype=torch.long)
    return train.images[idx], train.labels[idx]


def num_classes_of(train: ImageSet, test: ImageSet | None = None) -> int:
    """Number of classes: the dataset's class list, else the largest label seen + 1."""
    n = train.num_classes
    return max(n, test.num_classes) if test is not None else n


def finetune(backbone: nn.Module, spec_or_normalizer: BackboneSpec | Prepare | None, train: ImageSet,
             test: ImageSet, cfg: FinetuneConfig | None = None, device: str | torch.device = "cpu",
             train_idx: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Fine-tune a copy of `backbone` + a linear head on `train` (or its `train_idx` rows), report test accuracy.

    Returns {"top1", "top5" (None under 5 classes), "epochs", "steps", "minutes" (training), "n_train",
    "n_test", "num_classes", "settings" (the config with the resolved layer decay, drop path, batch, peak lr)}.
    """
    return fit_and_evaluate(backbone, spec_or_normalizer, train, test, cfg, device, train_idx, seed)[1]


def fit_and_evaluate(backbone: nn.Module, spec_or_normalizer: BackboneSpec | Prepare | None, train: ImageSet,
                     test: ImageSet, cfg: FinetuneConfig | None = None, device: str | torch.device = "cpu",
                     train_idx: torch.Tensor | None = None, seed: int = 0) -> tuple[TrainResult, dict]:
    """`finetune`, also returning the trained classifier (in `TrainResult.model`)."""
    cfg = cfg or FinetuneConfig()
    prepare = as_prepare(spec_or_normalizer)
    images, labels = labelled(train, train_idx)
    if test.labels is None:
        raise ValueError("the test set has no labels: fine-tuning accuracy needs a labelled test split")
    k = num_classes_of(train, test)
    res = train_classifier(backbone, prepare, images, labels, k, cfg, device, seed)
    scores = evaluate(res.model, prepare, test, cfg.eval_batch_size, device)
    return res, {**scores, **summary(res, len(images), len(test), k)}


def summary(res: TrainResult, n_train: int, n_test: int, num_classes: int) -> dict:
    """The budget, sizes and settings of a run, for the result JSON."""
    return {"epochs": round(res.epochs, 3), "steps": res.steps, "minutes": round(res.minutes, 3),
            "final_loss": round(res.last_loss, 4), "n_train": n_train, "n_test": n_test,
            "num_classes": num_classes, "settings": res.settings}


def finetune_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Fine-tuned top-1/top-5 on test after training on every labelled training image."""
    ctx.require_backbone()
    return finetune(ctx.backbone, ctx.prepare, ctx.labelled("train"), ctx.labelled("test"),
                    ctx.options or FinetuneConfig(), ctx.device, seed=ctx.seed)


__all__ = ["Classifier", "FinetuneConfig", "TrainResult", "accuracy", "as_prepare", "evaluate", "finetune",
           "finetune_protocol", "fit_and_evaluate", "predict_proba", "set_drop_path", "summary", "train_classifier"]
