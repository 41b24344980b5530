"""Every method's step under bf16 autocast against float32 on the same batch: the loss and its gradient must agree.

bf16 autocast runs on the CPU too (slowly: tiny sizes here), so the GPU's default precision is checked without one.
Losses and similarity logits run in float32 under autocast (methods/precision.py); the backbone and heads in bf16.
"""

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfsup.data import load_data
from selfsup.methods import METHODS

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from ddp_worker import RGB_DATA, build, pixel_drawn_masks, pixel_drawn_puzzles  # noqa: E402

# Where the rounding of bf16 matters most: DINO's mse form (qq + pp - 2 q.p) over 4096 prototypes (2% off in bf16
# before its loss ran in float32), and SimCLR's logits at T = 0.1.
VARIANTS = {"dino-mse": ("dino", {"loss": "mse", "out_dim": 4096}), "simclr-t0.1": ("simclr", {"temperature": 0.1})}
# KoLeo reads distances between [CLS] embeddings that a random 2-block ViT puts within 1e-4 of each other (emb_std
# 0.007 against 0.18 for spread ones): any rounding of the backbone's output moves them by more. It is checked in
# float32 alone below; here DINOv2 runs without it.
OVERRIDES = {"dinov2": {"koleo_loss_weight": 0.0}}


def digit_views(name: str) -> list[torch.Tensor]:
    """Two views of 16 digits at 16 px (and two 8-px local crops for multi-crop methods), normalised. Real images:
    on noise a random ViT maps every input to nearly one vector, and standardising losses (Barlow Twins) then
    amplify any rounding, bf16's or another order of float32 sums alike."""
    images = load_data("digits").train.images[:16].float() / 255
    small = F.interpolate(images, size=16, mode="bilinear", antialias=True)
    if name in RGB_DATA:
        small = small * torch.rand(len(small), 3, 1, 1, generator=torch.Generator().manual_seed(0))
    small = (small - 0.5) / 0.25
    views = [small, small.flip(-1)] + [small[..., 4:12, 4:12], small[..., 2:10, 6:14]]
    return views if METHODS[name].multicrop else views[:METHODS[name].n_views]


def loss_and_grad(method, views, bf16: bool) -> tuple[float, torch.Tensor]:
    method = copy.deepcopy(method)
    torch.manual_seed(0)  # the same masks, crops and permutations in both runs
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _ = method(views, step=0)
    loss.backward()
    grads = [p.grad.flatten() for p in method.parameters() if p.grad is not None]
    return float(loss.detach()), torch.cat(grads).float()


@pytest.mark.parametrize("name", sorted(METHODS) + sorted(VARIANTS))
def test_a_bf16_step_matches_float32(name, one_thread):
    method_name, overrides = VARIANTS.get(name, (name, {}))
    method = build(method_name, **{**OVERRIDES.get(name, {}), **overrides})
    pixel_drawn_masks(method)
    pixel_drawn_puzzles(method)
    method.setup(total_steps=10, steps_per_epoch=5)
    views = digit_views(method_name)
    loss32, grad32 = loss_and_grad(method, views, bf16=False)
    loss16, grad16 = loss_and_grad(method, views, bf16=True)
    assert torch.isfinite(torch.tensor(loss16)) and torch.isfinite(grad16).all()
    assert abs(loss16 - loss32) <= 1e-2 * abs(loss32), (loss16, loss32)
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.98


def _dino_loss(loss: str):
    from selfsup.methods.dino import DINOLoss

    return lambda a, b: DINOLoss(a.shape[1], loss=loss)(a, b[: len(b) // 2], 2, 0.04)


def _losses():
    from selfsup.methods.barlow_twins import barlow_twins_loss
    from selfsup.methods.byol import byol_loss
    from selfsup.methods.koleo import koleo_loss
    from selfsup.methods.moco_v2 import moco_loss
    from selfsup.methods.moco_v3 import ctr
    from selfsup.methods.simclr import nt_xent
    from selfsup.methods.simsiam import simsiam_loss
    from selfsup.methods.swav import swapped_prediction
    from selfsup.methods.vicreg import vicreg_loss

    return {
        "barlow-twins": lambda a, b: barlow_twins_loss(a, b, 0.005)[0],
        "vicreg": lambda a, b: vicreg_loss(a, b, 25.0, 25.0, 1.0)[0],
        "simclr": lambda a, b: nt_xent(torch.cat([a, b]), 0.1),
        "moco-v2": lambda a, b: moco_loss(a, b, torch.cat([a, b]).flip(0), 0.2),
        "moco-v3": lambda a, b: ctr(a, b, 0.2),
        "byol": lambda a, b: byol_loss(a, b, b, a),
        "simsiam": lambda a, b: simsiam_loss(a, b, b, a),
        "swav": lambda a, b: swapped_prediction(torch.cat([a, b]), torch.stack([b, a]).softmax(-1), 0.1),
        "dino": _dino_loss("ce"),
        "koleo": lambda a, b: koleo_loss(a + 1e-3 * b),
        "dino-mse": _dino_loss("mse"),
    }


@pytest.mark.parametrize("name", ["barlow-twins", "vicreg", "simclr", "moco-v2", "moco-v3", "byol", "simsiam",
                                  "swav", "dino", "dino-mse", "koleo"])
def test_each_loss_computes_in_float32_under_autocast(name):
    """The loss functions alone, fed float32 embeddings inside a bf16 autocast region: the same number as outside
    it (a matmul left to autocast would round its inputs to bf16's 8-bit mantissa)."""
    fn = _losses()[name]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 512, generator=g), torch.randn(32, 512, generator=g)
    want = fn(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(a, b)
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (float(got), float(want))
