"""The interface every pre-training method implements (in the spirit of moco-v3's builder.py).

A method owns the backbone and its heads. The engine calls, per optimisation step:
    loss, logs = method(views, step, diagnostics)   # views: list of (B, C, h, w) tensors, global views first
    backward; method.on_after_backward(step); clip; optimizer.step()
    method.on_after_step(step)            # momentum encoders, queues, DINO's centre, ...
Schedules are precomputed per step by `setup(total_steps, steps_per_epoch)` before training.

A step whose loss is not finite is skipped and must leave no trace, so `forward` changes no state of its
own: what it would update (DINO's centre, MoCo's and SwAV's queues) it keeps aside, and `on_after_step`,
which the engine calls only after a finite step, applies it. The one state a forward does change,
BatchNorm running statistics, the engine restores itself (engine/running_stats.py).
`diagnostics` asks for the logged measures (collapse, loss parts): each is a device sync, so the engine
asks on logging steps only; without it `logs` is empty.
With `--optim.eval-ema` the engine also calls `update_average()` after each finite step and evaluates
`evaluated_backbone()`: an EMA of the backbone's weights kept beside the method (`average_backbone`).
The engine's optimiser trains the groups of `param_groups()` (e.g. SimSiam's fixed-lr predictor); the
options a run starts from are the method's paper recipe, `recipes` (see methods/recipe.py).

Two families share this interface. Joint-embedding methods compare `n_views` = 2 augmented views (or
multi-crop). Single-image methods (masked image modelling, the pretext tasks) take `n_views` = 1 view and
make their own input and target from it inside `forward` (a mask, rotations, tiles, a grayscale copy).
Before training the engine calls `prepare_data(sample, mean, std)` with raw training images and the
normalisation of the views, for methods that need pixel values or data statistics (colorization's ab prior,
the reconstruction figures). A method whose backbone reads other channels than the data's (colorization:
1-channel lightness from RGB) says so in `input_channels`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from selfsup.methods.momentum import ema_update, momentum_copy
from selfsup.methods.recipe import Recipe, paper, resolve, section

# Shared views of the methods that compare two views of each image: no local crops, and the wide crop
# range of SimCLR/BYOL/MoCo v3 (RandomResizedCrop's default 0.08-1 of the area) instead of multi-crop's 0.4-1.
TWO_VIEWS: dict[str, Any] = {"n_local": paper(0), "global_scale": paper((0.08, 1.0))}


def one_view(global_scale: tuple[float, float], **more: Any) -> dict[str, Any]:
    """The views section of a single-image method (masked image modelling, pretext tasks): one crop of
    `global_scale` of the area, flipped, and no colour jitter, grayscale, blur or solarisation (none of
    these papers use them; colorization's target would not survive them); `more` overrides."""
    return section(**{"n_global": 1, "n_local": 0, "global_scale": global_scale, "color_jitter": 0.0,
                      "grayscale": 0.0, "blur": False, "solarize": 0.0, **more})


@dataclass
class ParamGroup:
    """Parameters the engine optimises together (see `Method.param_groups`)."""
    params: list[nn.Parameter]
    # Biases, 1-d (normalisation) parameters and the method's `no_weight_decay` names: not decayed nor
    # LARS-adapted unless --optim.decay-norm-bias, and trained at --optim.lr-bias when it is set (Barlow Twins).
    norm_or_bias: bool = False
    # Keeps the peak learning rate instead of following the schedule (SimSiam's predictor, --fix-pred-lr).
    fixed_lr: bool = False


def split_norm_bias(named: Iterable[tuple[str, nn.Parameter]], fixed_lr: bool = False,
                    skip: Collection[str] = ()) -> list[ParamGroup]:
    """DINO's split (utils.get_params_groups): weights apart from biases and 1-d parameters (norms); the
    parameters named in `skip` join the latter, as the `skip_list` of SimMIM's optimizer.py
    get_pretrain_param_groups."""
    weights, norm_bias = [], []
    for name, p in named:
        if p.requires_grad:
            (norm_bias if name.endswith(".bias") or p.ndim == 1 or name in skip else weights).append(p)
    return [ParamGroup(weights, fixed_lr=fixed_lr), ParamGroup(norm_bias, norm_or_bias=True, fixed_lr=fixed_lr)]


class Method(nn.Module):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    # Whether the method takes local crops after the global ones (DINO, SwAV); the others compare 2 views.
    multicrop: ClassVar[bool] = False
    # The paper's training recipe per backbone family ("vit", "resnet", or "any"): section -> option ->
    # `paper(value, cpu=..., why=...)`, above the option defaults and below any YAML recipe or flag (see
    # methods/recipe.py). docs/options.md lists them per method.
    recipes: ClassVar[dict[str, Recipe]] = {}
    # Global views per image for methods without multi-crop: 2 (joint embedding) or 1 (single-image methods).
    n_views: ClassVar[int] = 2
    # Other counts of global views a method without multi-crop accepts (distillation: 1, or 2 with its
    # contrastive term); empty: exactly `n_views`.
    n_views_allowed: ClassVar[tuple[int, ...]] = ()
    # Backbone families the method works with ("vit", "resnet"); MAE's visible-token encoder needs a ViT.
    families: ClassVar[tuple[str, ...]] = ("vit", "resnet")
    # Parameters (names as in `named_parameters()`) kept out of weight decay besides biases and norms, as the
    # official code's `no_weight_decay()` (SimMIM's ViT: [CLS] and the position embeddings); the engine
    # puts them in the norm-and-bias group (`param_groups`).
    no_weight_decay: ClassVar[tuple[str, ...]] = ()
    # Whether the method reads only the backbone's pooled features (its forward), so that a ViT may drop
    # patch tokens in training (--backbone.patch-dropout); False where it reads the token grid or masks itself.
    pooled_only: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, cfg: Any, n_global: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.n_global = n_global  # the first n_global views are global crops
        self.total_steps = 0
        self.steps_per_epoch = 0
        self.averaged: nn.Module | None = None  # see average_backbone
        self.average_momentum = 0.0

    def average_backbone(self, momentum: float) -> None:
        """Keep an EMA of the backbone's weights (`momentum` per step), evaluated in its place; part of the
        state dict, so checkpoints resume it. Its BatchNorm statistics are the backbone's, copied."""
        if type(self).eval_backbone is not Method.eval_backbone:
            raise ValueError(f"--optim.eval-ema: {self.name} already evaluates a momentum teacher; leave it at 0")
        self.averaged = momentum_copy(backbone=self.backbone)["backbone"]
        self.average_momentum = momentum

    @torch.no_grad()
    def update_average(self) -> None:
        """One EMA step of the averaged backbone (after the optimiser step); nothing without one."""
        if self.averaged is None:
            return
        ema_update(self.averaged, self.backbone, self.average_momentum)
        for mine, theirs in zip(self.averaged.buffers(), self.backbone.buffers(), strict=True):
            mine.copy_(theirs)

    def evaluated_backbone(self) -> nn.Module:
        """What the engine evaluates and exports: the averaged backbone if kept, else `eval_backbone()`."""
        return self.averaged if self.averaged is not None else self.eval_backbone()

    @classmethod
    def defaults(cls, backbone: str, optimizer: str | None = None) -> dict[str, dict[str, Any]]:
        """Section -> option -> value of this method's recipe for `backbone` (and an explicit `optimizer`)."""
        return resolve(cls.recipes, backbone, optimizer)

    @classmethod
    def input_channels(cls, data_channels: int) -> int:
        """Channels of the backbone's input for data with `data_channels` channels (by default the same)."""
        return data_channels

    def prepare_data(self, sample: torch.Tensor, mean: list[float], std: list[float]) -> None:
        """Before training: uint8 training images (N, C, H, W) and the per-channel mean/std (in [0, 1] units)
        the views are normalised with. Kept as non-persistent buffers `view_mean`, `view_std` (1, C, 1, 1) so
        that `pixels(view)` undoes the normalisation; methods that need data statistics extend this."""
        self.register_buffer("view_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("view_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def pixels(self, view: torch.Tensor) -> torch.Tensor:
        """A normalised view (B, C, h, w) back in [0, 1] units, with the statistics of `prepare_data`."""
        if not hasattr(self, "view_mean"):
            raise RuntimeError(f"{self.name} needs the data's normalisation: call prepare_data() first")
        return view * self.view_std + self.view_mean

    def param_groups(self) -> list[ParamGroup]:
        """The groups the engine's optimiser trains; by default weights apart from norms, biases and the
        `no_weight_decay` names."""
        return split_norm_bias(self.named_parameters(), skip=self.no_weight_decay)

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        """Precompute the method's per-step schedules. Called once the run length is known."""
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def on_after_backward(self, step: int) -> None:
        """Hook between backward and the optimiser step (e.g. freeze a layer's gradients)."""

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        """Hook after the optimiser step (e.g. EMA update of a momentum encoder)."""

    def eval_backbone(self) -> nn.Module:
        """The backbone whose features are evaluated and exported."""
        return self.backbone

    def embed(self, views: list[torch.Tensor], module: nn.Module | None = None) -> list[torch.Tensor]:
        """`module` (default: the backbone) applied to each view on its own, as a list of (B, D) tensors.

        One forward per view, as the official BYOL, SimSiam, Barlow Twins, VICReg and MoCo v3 codes: a
        ResNet's BatchNorm then normalises each view with its own batch statistics. Methods whose official
        code batches the views together (SimCLR, DINO, SwAV) call `forward_concat_by_size` instead."""
        module = module or self.backbone
        return [module(v) for v in views]

    def reconstruct(self, view: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """For methods that reconstruct pixels (MAE, SimMIM, inpainting): "masked" input, "reconstruction"
        and "original" images (B, C, H, W), normalised as `view`, for the run's figure. None for the others."""
        return None

    def schedule_values(self, step: int) -> dict[str, float]:
        """Scheduled hyper-parameters at `step`, for logging."""
        return {}


def forward_concat_by_size(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of all views, (sum of view batches, D): one forward per run of consecutive views of
    the same size, concatenated along the batch (DINO's and SwAV's multi-crop forward, SimCLR's 2N batch).
    BatchNorm layers then see the statistics of all views of a run at once."""
    sizes = torch.tensor([v.shape[-1] for v in views])
    ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0).tolist()
    out, start = [], 0
    for end in ends:
        out.append(backbone(torch.cat(views[start:end])))
        start = end
    return torch.cat(out)
