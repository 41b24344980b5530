"""The activation bytes measured by saved-tensor hooks, and the data's share of the estimate."""

import pytest
import torch

from selfsup.config import build_config
from selfsup.engine.build import build_method, resolve_sizes
from selfsup.sizing import DataFacts
from selfsup.sizing.memory import ACTIVATION_OVERHEAD, measure_activations, probe_method


def tiny(**views):
    raw = {"backbone": {"name": "vit-cpu", "patch_size": 4}, "views": {"global_size": 16, "n_local": 0, **views},
           "optim": {"batch_size": 4}, "dino": {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32}}
    return resolve_sizes(build_config(raw), 16)


def activations(cfg, batch):
    torch.manual_seed(0)
    method = build_method(cfg, 3)
    method.setup(10, 5)
    views = [torch.randn(batch, 3, 16, 16) for _ in range(cfg.views.n_global)]
    return measure_activations(method, views)


@pytest.mark.usefixtures("one_thread")
def test_activations_are_per_image_and_mostly_the_backbones():
    two, eight = activations(tiny(), 2), activations(tiny(), 8)
    assert eight.backbone == pytest.approx(two.backbone, rel=0.05)  # per image: independent of the batch
    assert two.backbone > 5 * two.rest > 0
    # 2 views x 4 blocks x 17 tokens x 128 channels x 4 bytes is 70 KB of one block-wide tensor per image;
    # a block keeps about a dozen such tensors
    assert 5 * 70e3 < two.backbone < 40 * 70e3


@pytest.mark.usefixtures("one_thread")
def test_micro_batches_divide_the_backbones_share_only():
    acts = activations(tiny(), 2)
    assert acts.at(8, 4) == pytest.approx(8 * (acts.backbone / 4 + acts.rest) * ACTIVATION_OVERHEAD)


@pytest.mark.usefixtures("one_thread")
def test_probe_leaves_the_random_state_and_counts_adamw_states():
    state = torch.get_rng_state()
    model, acts = probe_method(tiny(), 3)
    assert torch.equal(torch.get_rng_state(), state)
    method = build_method(tiny(), 3)
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in method.parameters() if not p.requires_grad)
    assert model == 4 * (4 * trainable + frozen)  # weights, gradients, AdamW's 2 states; the teacher's weights


def test_data_in_memory_counts_every_image():
    from selfsup.sizing.memory import data_bytes

    cfg = tiny()
    held, workers = data_bytes(cfg, DataFacts(1000, 16, 3, streamed=False, test_count=200), 4)
    assert workers == 0 and held == 1200 * 3 * 256 + 8 * 1000 * 3 * 256
