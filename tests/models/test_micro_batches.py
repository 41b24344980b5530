"""Gradient accumulation by micro-batches (models/micro_batches.py): k parts of a batch give the one-batch step.

For every method the loss and every parameter's gradient with the backbone on 4 parts equal those of one
batch, which a per-part loss would not give for the methods that compare images of a batch (contrastive
negatives, DINO's centre, SwAV's codes, Barlow Twins' and VICReg's batch statistics).
"""

import sys
from pathlib import Path

import pytest
import torch

from selfsup.config import ConfigError
from selfsup.engine.build import build_method
from selfsup.methods import METHODS
from selfsup.models.micro_batches import micro_batched
from selfsup.models.resnet import resnet18
from selfsup.models.vit import VisionTransformer

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).parents[1] / "methods"))
from ddp_worker import build, fixed_views  # noqa: E402
from test_every_method import run_cfg  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small tensors: one thread."""


def loss_and_grads(name: str, parts: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    method = build(name)
    method.backbone.micro_batches = parts
    method.setup(total_steps=10, steps_per_epoch=5)
    torch.manual_seed(1)  # the same masks, rotations and puzzles in both runs (drawn outside the backbone)
    loss, _ = method(fixed_views(8, name), step=0, diagnostics=False)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_four_micro_batches_give_the_one_batch_gradient(name):
    loss, grads = loss_and_grads(name, 1)
    loss4, grads4 = loss_and_grads(name, 4)
    torch.testing.assert_close(loss4, loss, rtol=1e-5, atol=1e-6)
    assert grads4.keys() == grads.keys() and any(k.startswith("backbone.blocks") for k in grads)
    for k in grads:  # float32 summation order differs: equal to 1e-5 of the tensor's largest entry
        scale = grads[k].abs().max().item()
        torch.testing.assert_close(grads4[k], grads[k], rtol=0, atol=1e-5 * scale + 1e-12, msg=k)


def saved_bytes(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward from one training forward of `net` (outside
    checkpointed parts: those keep only their inputs)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).sum().backward()
    return total


def test_micro_batches_keep_a_fraction_of_the_activations():
    torch.manual_seed(0)
    net = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=4, num_heads=2)
    x = torch.randn(16, 1, 16, 16)
    whole = saved_bytes(net, x)
    net.micro_batches = 4
    assert saved_bytes(net, x) < whole / 10


def test_resnet_batch_norm_statistics_are_updated_once_per_part():
    torch.manual_seed(0)
    net, reference = resnet18(in_chans=1, width=8), resnet18(in_chans=1, width=8)
    reference.load_state_dict(net.state_dict())
    x = torch.randn(8, 1, 16, 16)
    net.micro_batches = 2
    net(x).sum().backward()  # recomputes each part in backward
    with torch.no_grad():
        for part in x.chunk(2):
            reference(part)
    assert int(net.bn1.num_batches_tracked) == 2
    torch.testing.assert_close(net.state_dict(), reference.state_dict())


def test_without_gradients_the_batch_runs_whole():
    calls = []
    x = torch.randn(8, 3)
    with torch.no_grad():
        micro_batched(lambda t: (calls.append(len(t)) or t,), x, 4, torch.nn.Identity())
    assert calls == [8]


def test_the_option_reaches_the_backbone_and_a_bad_value_is_refused(tmp_path):
    cfg = run_cfg("simclr", "vit-cpu", tmp_path / "run", optim={"batch_size": 64, "micro_batches": 4})
    assert build_method(cfg, channels=1).backbone.micro_batches == 4
    cfg = run_cfg("simclr", "vit-cpu", tmp_path / "run", optim={"batch_size": 8, "micro_batches": 16})
    with pytest.raises(ConfigError, match="--optim.micro-batches 16"):
        build_method(cfg, channels=1)
