"""A method's training recipe: the option values its paper trains with, per backbone family.

Each value is declared once with `paper(value, cpu=..., why=...)`: the paper's value, and the CPU preset's
where it must differ, with the reason (docs/options.md shows all three). The configuration layers are
    option defaults < the method's recipe < a YAML recipe (--config) < command-line flags,
so an explicit value always wins. The recipe is picked by backbone family (`vit` or `resnet`; `any` when
the paper has one recipe) and, if the optimiser is set explicitly to another one than the recipe's, the
optimiser settings come from the method's recipe for that optimiser or else from `OPTIMIZER_FALLBACK`: SGD
or LARS never inherit an AdamW recipe's weight decay (DINO's 0.04 -> 0.4 ramp is for AdamW only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SAME = object()


@dataclass(frozen=True)
class Setting:
    paper: Any
    cpu: Any = _SAME
    why: str = ""

    @property
    def value(self) -> Any:
        """The value a run gets: the CPU preset's where it differs, else the paper's."""
        return self.paper if self.cpu is _SAME else self.cpu

    @property
    def differs(self) -> bool:
        return self.cpu is not _SAME


def paper(value: Any, cpu: Any = _SAME, why: str = "") -> Setting:
    """The paper's `value`; `cpu` (with `why`) where the CPU preset must differ."""
    if (cpu is _SAME) != (not why):
        raise ValueError("a CPU value needs its reason (why=...), and a reason needs a CPU value")
    return Setting(value, cpu, why)


Recipe = dict[str, dict[str, Setting]]  # section -> option -> setting
OPTIM_KEYS = ("optimizer", "lr", "lr_bias", "min_lr", "warmup_epochs", "warmup_max_share", "weight_decay",
              "weight_decay_end", "decay_norm_bias", "clip_grad", "clip_mode", "betas")

# Optimiser settings for a method run with an optimiser its paper does not use (none are a paper's recipe).
OPTIMIZER_FALLBACK: dict[str, dict[str, Any]] = {
    "adamw": {"lr": 5e-4, "min_lr": 1e-6, "warmup_epochs": 10, "warmup_max_share": 1.0, "weight_decay": 0.04,
              "weight_decay_end": 0.4, "clip_grad": 3.0, "clip_mode": "parameter", "decay_norm_bias": False,
              "lr_bias": None, "betas": (0.9, 0.999)},  # DINO's ViT
    "sgd": {"lr": 0.05, "min_lr": 0.0, "warmup_epochs": 0, "warmup_max_share": 1.0, "weight_decay": 1e-4,
            "weight_decay_end": 1e-4, "clip_grad": 0.0, "clip_mode": "parameter", "decay_norm_bias": True,
            "lr_bias": None, "betas": (0.9, 0.999)},  # SimSiam's
    "lars": {"lr": 0.3, "min_lr": 0.0, "warmup_epochs": 10, "warmup_max_share": 1.0, "weight_decay": 1e-6,
             "weight_decay_end": 1e-6, "clip_grad": 0.0, "clip_mode": "parameter", "decay_norm_bias": False,
             "lr_bias": None, "betas": (0.9, 0.999)},  # SimCLR's
}


def family(backbone: str) -> str:
    return "resnet" if backbone.startswith("resnet") else "vit"


def values(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Plain section -> option -> value of a recipe (CPU values where they differ)."""
    return {s: {k: v.value for k, v in opts.items()} for s, opts in recipe.items()}


def pick(recipes: dict[str, Recipe], backbone: str) -> Recipe:
    """The recipe for `backbone`: its family's, or the method's only one (`any`)."""
    return recipes.get(family(backbone)) or recipes.get("any") or {}


def resolve(recipes: dict[str, Recipe], backbone: str, optimizer: str | None = None) -> dict[str, dict[str, Any]]:
    """The method's defaults for `backbone`, and for `optimizer` when it is set explicitly."""
    out = values(pick(recipes, backbone))
    chosen = out.get("optim", {}).get("optimizer")
    if optimizer is None or chosen is None or optimizer == chosen:
        return out
    same = [values(r)["optim"] for r in recipes.values() if values(r).get("optim", {}).get("optimizer") == optimizer]
    optim = {k: v for k, v in out["optim"].items() if k not in OPTIM_KEYS}
    optim.update(same[0] if same else OPTIMIZER_FALLBACK.get(optimizer, {}))
    return {**out, "optim": {**optim, "optimizer": optimizer}}


def section(**options: Any) -> dict[str, Setting]:
    """A recipe section; plain values are the paper's (and the CPU preset's)."""
    return {k: v if isinstance(v, Setting) else paper(v) for k, v in options.items()}


def optim(optimizer: str, lr: Any, weight_decay: Any, warmup_epochs: Any, *, weight_decay_end: Any = None,
          min_lr: Any = 0.0, clip_grad: Any = 0.0, clip_mode: Any = "parameter", decay_norm_bias: Any = False,
          lr_bias: Any = None, betas: Any = (0.9, 0.999), warmup_of: float | None = None) -> dict[str, Setting]:
    """An optim section that sets every optimiser option, so that none is inherited from another method's
    defaults. lr is at batch 256 (scaled linearly); weight_decay_end defaults to weight_decay (constant);
    clip_mode is how clip_grad clips (per parameter as DINO, or the global norm); betas are AdamW's (torch's
    default unless the paper sets them). `warmup_of`: the epochs of the paper's schedule that its warm-up was
    set for; a shorter run then warms up for the same share of itself (warmup_max_share)."""
    share = 1.0 if warmup_of is None else warmup_epochs / warmup_of
    return section(optimizer=optimizer, lr=lr, lr_bias=lr_bias, min_lr=min_lr, warmup_epochs=warmup_epochs,
                   warmup_max_share=share, weight_decay=weight_decay,
                   weight_decay_end=weight_decay if weight_decay_end is None else weight_decay_end,
                   decay_norm_bias=decay_norm_bias, clip_grad=clip_grad, clip_mode=clip_mode, betas=betas)


def instead(recipe_section: dict[str, Setting], why: str, **values: Any) -> dict[str, Setting]:
    """`recipe_section` with `values` run instead of the paper's, for the reason `why` (e.g. AdamW for a ViT,
    which a ResNet-era paper never trained): docs/options.md shows both."""
    swapped = {k: paper(recipe_section[k].paper, cpu=v, why=why) for k, v in values.items()
               if v != recipe_section[k].paper}
    return {**recipe_section, **swapped}


def adamw_for_vit(cnn_optim: dict[str, Setting]) -> dict[str, Setting]:
    """The optim section of a paper that trains CNNs with SGD (the pretext tasks), run with AdamW on a ViT:
    DINO's lr (5e-4 at batch 256), 10 warm-up epochs, min lr and clip, and the weight decay 0.05 of DeiT and MAE."""
    return instead(cnn_optim, "the paper trains no ViT, and SGD at a CNN's lr trains ViTs poorly: AdamW",
                   optimizer="adamw", lr=5e-4, min_lr=1e-6, warmup_epochs=10, weight_decay=0.05,
                   weight_decay_end=0.05, decay_norm_bias=False, clip_grad=3.0)
