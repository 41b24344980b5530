"""Every registered method: trains end to end through the engine on both backbones, and lowers its loss."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.config import ConfigError, build_config
from selfsup.data import load_data
from selfsup.diagnostics import collapse_modes, effective_rank, embedding_std, ideal_std
from selfsup.engine.optim import build_optimizer
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.methods import METHODS, Method
from selfsup.methods.recipe import family
from selfsup.models.io import load_backbone

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from ddp_worker import RGB_DATA, TINY, build, data_channels  # noqa: E402

FROZEN_TARGET = {name: {"momentum_teacher": 1.0, "center_momentum": 1.0} for name in ("dino", "ibot", "dinov2")}
# Methods whose loss on a fixed batch cannot fall by design, with the reason and where they are checked.
NO_FIXED_BATCH_DESCENT = {
    "moco-v2": "its negatives are a queue of past keys: on 32 fixed images it fills with stale keys of the same "
               "images, each query's own among them (test_moco_v2.py trains with a queue of other images)",
}


def test_every_method_has_a_tiny_config_for_the_tests():
    assert set(TINY) == set(METHODS)


def rgb_digits(folder: Path) -> Path:
    """The digits tinted with one random colour per image, as an .npz (images, labels) of uint8 RGB: the data
    of the methods that need colour (RGB_DATA)."""
    path = folder / "rgb-digits.npz"
    if not path.exists():
        train = load_data("digits").train
        images = (train.images.float() * tints(len(train.images))).round().to(torch.uint8)
        np.savez(path, images=images.numpy(), labels=train.labels.numpy())
    return path


def tints(n: int) -> torch.Tensor:
    """(n, 3, 1, 1) random colours in [0, 1], the same every time."""
    return torch.rand(n, 3, 1, 1, generator=torch.Generator().manual_seed(0))


def run_cfg(name: str, backbone: str, out: Path, /, **sections):
    multi = METHODS[name].multicrop
    # a ResNet-18 with the small-image stem keeps 28x28 maps in its first stage: 24 images keep it quick;
    # two steps of the 1,437 training digits either way
    batch = 64 if backbone.startswith("vit") else 24
    data = str(rgb_digits(out.parent)) if name in RGB_DATA else "digits"
    raw = {"method": name, "data": {"name": data},
           "backbone": {"name": backbone, **({"patch_size": 7} if backbone.startswith("vit") else {})},
           "views": {"global_size": 28, "local_size": 14, "n_local": 2 if multi else 0},
           "optim": {"epochs": 2 / (1437 // batch), "batch_size": batch, "warmup_epochs": 1.1 / (1437 // batch)},
           "run": {"out": str(out), "eval_knn": False, "log_every": 1}, name: TINY[name]}
    raw.update(sections)
    return build_config(raw)


# SimSiam's tiny head has no BatchNorm (TINY): on a ResNet at init (its blocks identities, its features
# non-negative) that head maps every image to nearly one vector, the collapse its paper reports without BN; the
# engine's collapse warning says so (emb_std at a tenth of its reference), so this test runs SimSiam's own head.
HEALTHY_START = {"simsiam": {"simsiam": {**TINY["simsiam"], "head_bn": True}},
                 # DINOv2's LayerScale starts every block near the identity, so at step 0 every image's [CLS]
                 # embedding is nearly the same vector (emb_std 1e-6 at LayerScale 1e-5, 0.002 at 0.1, against the
                 # 1/sqrt(d) reference 0.088): the collapse warning fires at the first step; this test runs its
                 # recipe without LayerScale
                 # (test_dinov2.py checks that the recipe builds it with LayerScale).
                 "dinov2": {"backbone": {"name": "vit-cpu", "patch_size": 7, "layerscale": None}}}


@pytest.mark.parametrize("backbone", ["vit-cpu", "resnet18"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_steps_through_the_engine(name, backbone, tmp_path):
    if family(backbone) not in METHODS[name].families:  # MAE and SimMIM need a ViT: a clear error instead
        with pytest.raises(ConfigError, match=f"{name} needs a vit backbone"):
            Trainer(run_cfg(name, backbone, tmp_path / "run"), progress=False).setup()
        return
    trainer = Trainer(run_cfg(name, backbone, tmp_path / "run", **HEALTHY_START.get(name, {})), progress=False)
    trainer.setup()
    before = {k: v.clone() for k, v in trainer.method.named_parameters()}
    trainer.setup = lambda: None
    result = trainer.fit()
    assert result.steps == 2
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 0 and "warmup_share" in logged[0]  # the warm-up's share of the run, first
    lines = logged[1:]
    assert [x["step"] for x in lines] == [1, 2]
    assert all(math.isfinite(x["loss"]) and x["nonfinite_steps"] == 0 for x in lines), lines
    # a healthy start on real images: no collapse warning (the std and rank thresholds of diagnostics/modes.py)
    assert [collapse_modes(x) for x in lines] == [[], []] and not any("warning" in x for x in lines), lines
    trained = [k for k, p in trainer.method.backbone.named_parameters() if p.requires_grad]
    moved = [k for k in trained if not torch.equal(before["backbone." + k], trainer.method.backbone.get_parameter(k))]
    # Half at least: a ResNet's blocks start as identities (last BatchNorm scale 0), so the layers before that
    # BatchNorm get no gradient in the first steps (and step 0 has lr 0, at the start of the warm-up). Without
    # weight decay (inpainting's recipe), or with a decoupled decay step lr x wd below float32's resolution
    # (colorization's Adam at 3e-5 x 24/256 and 1e-3), those layers do not move at all: 28 of a ResNet-18's 60
    # parameters move.
    o = trainer.cfg.optim
    share = 0.4 if o.weight_decay * o.lr * o.batch_size / 256 < 1e-7 else 0.5
    assert len(moved) >= len(trained) * share, sorted(set(trained) - set(moved))
    reconstructs = METHODS[name].reconstruct is not Method.reconstruct  # MAE, SimMIM, inpainting: the figure
    assert (tmp_path / "run" / "reconstructions.png").exists() == reconstructs
    model, spec = load_backbone(tmp_path / "run" / "backbone.safetensors")
    assert spec.name == backbone
    assert model(torch.zeros(2, 1, 28, 28)).shape[0] == 2


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_goes_down_on_fixed_digit_views(name):
    """Twenty steps on the same augmented views of 32 digits: every method can fit them.

    DINO's target moves: as the EMA teacher sharpens its cross-entropy rises by design, so here the
    teacher and its centre are frozen (momentum 1) and the student must move towards it."""
    if name in NO_FIXED_BATCH_DESCENT:
        pytest.skip(NO_FIXED_BATCH_DESCENT[name])
    torch.manual_seed(0)
    images = load_data("digits").train.images[:32].float() / 255
    small = torch.nn.functional.interpolate(images, size=16, mode="bilinear", antialias=True)
    if name in RGB_DATA:  # coloured digits, normalised as `build` tells the method (mean 0.5, std 0.25)
        small = (small * tints(len(small)) - 0.5) / 0.25
    views = [small, small.flip(-1)] + ([small[..., 4:12, 4:12]] * 2 if METHODS[name].multicrop else [])
    views = views if METHODS[name].multicrop else views[:METHODS[name].n_views]
    method = build(name, **FROZEN_TARGET.get(name, {}))
    method.setup(total_steps=20, steps_per_epoch=10)
    opt = build_optimizer(method)
    for g in opt.param_groups:
        g["lr"] = 1e-3
    losses = []
    for step in range(20):
        loss, logs = method(views, step)
        assert {"emb_std", "emb_std_ideal"} <= set(logs)  # the collapse measure the benchmark reports
        opt.zero_grad()
        loss.backward()
        method.on_after_backward(step)
        opt.step()
        method.on_after_step(step)
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_two_view_methods_refuse_local_crops(tmp_path):
    cfg = run_cfg("byol", "vit-cpu", tmp_path / "r", views={"global_size": 28, "local_size": 14, "n_local": 2})
    with pytest.raises(ConfigError, match="n-local"):
        pretrain(cfg, progress=False)


# The module whose outputs each method's `emb_std` measures (the embedding whose 1/sqrt(d) reference
# holds), and which of its calls in one forward: DINO's backbone features of the global crops (its first
# call; not the K prototype logits), the other methods' projections of both views (MoCo v2: its queries).
MEASURED = {"dino": ("backbone", slice(0, 1)), "moco-v2": ("head", slice(None)), "simclr": ("projector", slice(None)),
            "byol": ("projector", slice(None)), "simsiam": ("projector", slice(None)),
            "barlow-twins": ("projector", slice(None)), "vicreg": ("projector", slice(None)),
            "swav": ("projector", slice(None)), "moco-v3": ("projector", slice(None)),
            # masked image modelling: the encoder's final norm, [CLS] of the visible tokens (MAE) or the mean
            # of the patch tokens (SimMIM)
            "mae": ("backbone.norm", slice(None), lambda t: t[:, 0]),
            "simmim": ("backbone.norm", slice(None), lambda t: t[:, 1:].mean(dim=1)),
            # pretext tasks: the backbone features of all their inputs (rotations, tiles, patch pairs)
            "rotation": ("backbone", slice(None)), "jigsaw": ("backbone", slice(None)),
            "relative-position": ("backbone", slice(None)),
            # dense pretext tasks: the mean of the patch tokens of their input (lightness, masked view)
            "colorization": ("backbone.norm", slice(None), lambda t: t[:, 1:].mean(dim=1)),
            "inpainting": ("backbone.norm", slice(None), lambda t: t[:, 1:].mean(dim=1)),
            # distillation: the student's pooled feature projected to the teacher's width (its reference is the
            # teacher's own spread: test_distill.py)
            "distill": ("pooled_proj", slice(None)),
            # iBOT, DINOv2: as DINO's, the [CLS] embeddings of the (masked) global crops: the student's first
            # forward_features call, whose final norm they come out of
            "ibot": ("backbone.norm", slice(0, 1), lambda t: t[:, 0]),
            "dinov2": ("backbone.norm", slice(0, 1), lambda t: t[:, 0])}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_logs_the_collapse_measure(name):
    multi, c = METHODS[name].multicrop, data_channels(name)
    views = [torch.randn(8, c, 16, 16) for _ in range(2)] + ([torch.randn(8, c, 8, 8)] * 2 if multi else [])
    method = build(name)
    method.setup(total_steps=2, steps_per_epoch=1)
    module, calls, pick = (*MEASURED[name], lambda t: t)[:3]
    outputs = []
    method.get_submodule(module).register_forward_hook(lambda m, args, out: outputs.append(pick(out.detach())))
    _, logs = method(views, 0, diagnostics=True)
    z = torch.cat(outputs[calls])
    assert logs["emb_std"] == pytest.approx(embedding_std(z), rel=1e-5)
    if name != "distill":  # against the teacher's spread there
        assert logs["emb_std_ideal"] == pytest.approx(ideal_std(z.shape[-1]))
    assert 0 < logs["emb_std"] <= 1


@pytest.mark.parametrize("name", sorted(METHODS))
def test_diagnostics_are_computed_only_when_asked(name):
    """The engine asks on logging steps only: each diagnostic is a device sync on a GPU."""
    multi, c = METHODS[name].multicrop, data_channels(name)
    views = [torch.randn(8, c, 16, 16) for _ in range(2)] + ([torch.randn(8, c, 8, 8)] * 2 if multi else [])
    method = build(name)
    method.setup(total_steps=2, steps_per_epoch=1)
    loss, logs = method(views, 0, diagnostics=False)
    assert logs == {} and torch.isfinite(loss)


# Joint-embedding methods log their backbone's features beside their projections (collapse_logs(z, backbone=h)):
# which calls of the backbone in one forward (the global crops of the multi-crop ones). DINO's emb_std is
# already its backbone's (MEASURED).
BACKBONE_MEASURED = [("moco-v2", slice(None)), ("byol", slice(None)), ("simsiam", slice(None)),
                     ("barlow-twins", slice(None)), ("vicreg", slice(None)), ("swav", slice(0, 1)),
                     ("moco-v3", slice(None)), ("simclr", slice(None))]


@pytest.mark.parametrize("name,calls", BACKBONE_MEASURED)
def test_joint_embedding_methods_log_their_backbone_std_and_rank(name, calls):
    multi = METHODS[name].multicrop
    views = [torch.randn(8, 1, 16, 16) for _ in range(2)] + ([torch.randn(8, 1, 8, 8)] * 2 if multi else [])
    method = build(name)
    method.setup(total_steps=2, steps_per_epoch=1)
    outputs = []
    method.backbone.register_forward_hook(lambda m, args, out: outputs.append(out.detach()))
    _, logs = method(views, 0, diagnostics=True)
    h = torch.cat(outputs[calls])
    if multi:  # the global crops of the concatenated forward
        h = h[: 2 * 8]
    assert logs["backbone_std"] == pytest.approx(embedding_std(h), rel=1e-5)
    assert logs["backbone_std_ideal"] == pytest.approx(ideal_std(h.shape[-1]))
    assert logs["backbone_rank"] == pytest.approx(effective_rank(h), rel=1e-4)
    assert 1 <= logs["emb_rank"] <= 16
