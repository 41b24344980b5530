"""The recipe sized to the machine and the images: what `selfsup pretrain --data PATH` trains when nothing else
is given. Every value it chooses is one the user left open (no flag, no YAML key); each choice comes with its
reason, printed before the run and saved in config.yaml with the rest.

On a GPU: the papers' ViT-S/16 recipe (DINO's 2x224 + 10x96 crops), the batch as large as memory allows (the
memory guard lowers it; `selfsup.sizing.guard`). On a CPU: the 4-block ViT of width 128 (vit-cpu) on crops
sized so that the run sees the data `TARGET_EPOCHS` times in its budget at the speed `speed.py` predicts for
these cores; the most patch tokens that allows (at most 8x8; 4x4 on images of 32 px or less, as the demo
measured), then the largest crop. The method stays the configured one, except that images of 32 px or less on
a CPU get the demo's measured recipe (SimCLR: the most k-NN per CPU-minute in docs/demo_sweep.md) when no
method or method option was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from selfsup.config import build_config, merge, recipe
from selfsup.machine import Resources
from selfsup.models.vit import VIT_PRESETS, pick_patch_size
from selfsup.sizing.continuing import continuing_values
from selfsup.sizing.data_facts import DataFacts
from selfsup.sizing.speed import StepShape, images_per_second

TARGET_EPOCHS = 4  # passes over the data a CPU run's crops are sized for (2 or more is the goal; 2x margin)
TARGET_IMAGES_CAP = 40_000  # ... or this many images seen, for larger sets
PLAN_MINUTES = 10.0  # the budget crops are sized for when the run has no --minutes
SIDES = (224, 192, 160, 128, 112, 96, 80, 64, 56, 48, 32, 28)  # global crop sides a CPU run may take
PATCHES = (16, 14, 8, 7, 4)
CPU_GRID = (4, 8)  # patches a side of a CPU run's global crop, at least and at most
SMALL_SIDE = 32  # images this small train the demo's recipe on a CPU
CPU_BATCH = (16, 256)  # a CPU run's batch: about 16 steps an epoch, within these
GPU_BATCH = (16, 1024)  # DINO's batch 1024 at most; the memory guard lowers it to what fits
STEPS_PER_EPOCH = 16
GPU_WORKERS = 10  # DINO's per GPU
DEMO_KEEP = ("method", "backbone", "views", "optim", "simclr")  # the demo recipe's sections a small-image run takes
DEMO_DROP = {"optim": ("minutes", "batch_size"), "views": ("global_size",), "backbone": ("patch_size",)}


@dataclass
class SizedRecipe:
    """The values chosen (nested like a YAML recipe; only options the user left open) and why."""

    values: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def set(self, path: str, value: Any) -> None:
        """Set "section.key" (or "method") to `value`."""
        if "." not in path:
            self.values[path] = value
            return
        section, key = path.split(".")
        self.values.setdefault(section, {})[key] = value


def given(user: dict[str, Any], path: str) -> bool:
    """Whether the user set `path` ("optim.batch_size", or "method") by a flag or in the YAML recipe."""
    if "." not in path:
        return path in user
    section, key = path.split(".")
    return key in (user.get(section) or {})


def _pow2_floor(x: float) -> int:
    return 2 ** int(math.floor(math.log2(max(x, 1))))


def choose(user: dict[str, Any], facts: DataFacts, res: Resources, head: tuple[int, bool] | None = None
           ) -> SizedRecipe:
    """The sized recipe for the user's values `user` (YAML and flags), the data and the machine. `head` is
    (head parameters, has a momentum teacher) of the configured method; measured by building it when None."""
    out = SizedRecipe()
    out.reasons.append(f"sized for {facts.words()}; {res.words()}")
    if given(user, "backbone.init"):  # the architecture is the file's (engine/init.py): batch and workers only
        out.reasons.append("--init: the backbone and its patch size are the file's; crops as given or the images' "
                           "side (set --views.global-size to a multiple of the file's patch size for fewer tokens)")
        values, words = continuing_values(user)
        if _put(user, out, values):
            out.reasons.append(words + " (a value you give wins)")
    elif res.gpu:
        _gpu(user, facts, res, out)
    else:
        _small_images(user, facts, out)
        _cpu(user, facts, res, out, head)
    _batch(user, facts, res, out)
    _workers(user, facts, res, out)
    return out


def _put(user: dict[str, Any], out: SizedRecipe, values: dict[str, Any]) -> list[str]:
    """Set each of `values` ({"views.global_size": 224, ...}) the user left open; the paths set."""
    done = [p for p in values if not given(user, p)]
    for p in done:
        out.set(p, values[p])
    return done


def _gpu(user: dict[str, Any], facts: DataFacts, res: Resources, out: SizedRecipe) -> None:
    method = user.get("method", "dino")
    if facts.side >= 96:
        sizes = {"backbone.name": "vit-small", "backbone.patch_size": 16, "views.global_size": 224,
                 "views.local_size": 96}
        why = "the papers' ViT-S/16 on 224-px global and 96-px local crops"
    else:
        patch = pick_patch_size(16, facts.side)
        sizes = {"backbone.name": "vit-small", "backbone.patch_size": patch, "views.global_size": facts.side}
        why = f"ViT-S on the images' {facts.side} px with {patch}-px patches (224-px crops would only upsample them)"
    if method == "dino":
        sizes["views.n_local"] = 10
        why += ", 10 local crops (DINO's best: 2x224 + 10x96)"
    _put(user, out, sizes)
    out.reasons.append(f"GPU {res.gpu}: {why}")


def _small_images(user: dict[str, Any], facts: DataFacts, out: SizedRecipe) -> None:
    """Images of SMALL_SIDE px or less on a CPU: the demo's recipe, unless a method or its options were given."""
    from selfsup.methods import METHODS

    if facts.side > SMALL_SIDE or given(user, "method") or any(m in user for m in METHODS):
        return
    demo = recipe("demo")
    for section in DEMO_KEEP:
        values = demo[section] if section == "method" else {
            k: v for k, v in demo[section].items() if k not in DEMO_DROP.get(section, ())}
        if section == "method":
            _put(user, out, {"method": values})
        else:
            _put(user, out, {f"{section}.{k}": v for k, v in values.items()})
    out.reasons.append(f"images of {facts.side} px on a CPU: the demo's recipe ({demo['method']}, conv stem, patch "
                       "dropout 0.5, strong jitter), the most k-NN per CPU-minute in docs/demo_sweep.md")


def _config(user: dict[str, Any], out: SizedRecipe) -> Any:
    return build_config(merge(out.values, user), "sized recipe")


def _head(cfg: Any, channels: int) -> tuple[int, bool]:
    """(trainable parameters outside the backbone, whether a momentum teacher runs): from the method built small."""
    import dataclasses

    from selfsup.engine.build import build_method, resolve_sizes

    patch = cfg.backbone.patch_size or 8
    small = resolve_sizes(dataclasses.replace(cfg, views=dataclasses.replace(
        cfg.views, global_size=4 * patch, local_size=patch)), 4 * patch)
    method = build_method(small, channels)
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in method.parameters() if not p.requires_grad)
    return trainable - sum(p.numel() for p in method.backbone.parameters()), frozen > 0


def _cpu(user: dict[str, Any], facts: DataFacts, res: Resources, out: SizedRecipe,
         head: tuple[int, bool] | None) -> None:
    cfg = _config(user, out)
    b, v = cfg.backbone, cfg.views
    preset = VIT_PRESETS.get(b.name)
    if preset is None or (given(user, "views.global_size") and given(user, "backbone.patch_size")):
        return  # a ResNet, or both sizes given: nothing to size
    head_params, teacher = head if head is not None else _head(cfg, facts.channels)
    minutes = cfg.optim.minutes or PLAN_MINUTES
    target = TARGET_EPOCHS * min(facts.count, TARGET_IMAGES_CAP // TARGET_EPOCHS)
    grids = (4, 4) if facts.side <= SMALL_SIDE else CPU_GRID
    sides = [v.global_size] if given(user, "views.global_size") else sorted(
        {s for s in (*SIDES, facts.side) if s <= facts.side}, reverse=True)
    patches = [b.patch_size] if given(user, "backbone.patch_size") else list(PATCHES)
    rows = []
    for g in sides:
        for p in patches:
            if g % p or not grids[0] <= g // p <= grids[1]:
                continue
            local = v.local_size if given(user, "views.local_size") else max(p, round(g * 96 / 224 / p) * p)
            shape = StepShape(b.name, b.width or preset.embed_dim, b.depth or preset.depth, g, local, v.n_global,
                              v.n_local, p, teacher, head_params, b.patch_dropout)
            rate = images_per_second(shape, res.cores)
            rows.append(((g // p) ** 2, g, p, local, rate))
    if not rows:
        return
    fits = [r for r in rows if r[4] * minutes * 60 >= target]
    tokens, g, p, local, rate = max(fits) if fits else max(rows, key=lambda r: r[4])
    _put(user, out, {"views.global_size": g, "backbone.patch_size": p, "views.local_size": local})
    epochs = rate * minutes * 60 / max(facts.count, 1)
    budget = f"{cfg.optim.minutes:g} min" if cfg.optim.minutes else f"{PLAN_MINUTES:g} min (no --minutes)"
    crops = f"{v.n_global}x{g}" + (f" + {v.n_local}x{local}" if v.n_local else "")
    note = "" if fits else f"; no crop reaches {TARGET_EPOCHS} passes, so the fastest"
    out.reasons.append(f"CPU: {b.name} on {crops} px crops, {p}-px patches ({tokens} tokens a global crop): about "
                       f"{rate:.0f} images/s predicted on {res.cores} cores, {epochs:.1f} epochs in {budget}{note}")


def _batch(user: dict[str, Any], facts: DataFacts, res: Resources, out: SizedRecipe) -> None:
    if given(user, "optim.batch_size"):
        return
    low, high = GPU_BATCH if res.gpu else CPU_BATCH
    batch = min(max(_pow2_floor(facts.count / STEPS_PER_EPOCH), low), high, _pow2_floor(facts.count))
    out.set("optim.batch_size", max(batch, 2))
    why = "as memory allows, up to DINO's 1024" if res.gpu else f"at least {STEPS_PER_EPOCH} where the data allows"
    out.reasons.append(f"batch {batch}: {facts.count // batch} steps an epoch of {facts.count:,} images ({why})")


def _workers(user: dict[str, Any], facts: DataFacts, res: Resources, out: SizedRecipe) -> None:
    if not facts.streamed or given(user, "data.workers"):
        return
    workers = min(res.cores - 1, GPU_WORKERS) if res.gpu else min(res.cores - 1, max(1, res.cores // 8))
    out.set("data.workers", max(workers, 0))
    why = "to feed the GPU" if res.gpu else "the model computes on every core; decoding small JPEGs takes little"
    out.reasons.append(f"{max(workers, 0)} DataLoader worker(s) on {res.cores} cores: {why}")
