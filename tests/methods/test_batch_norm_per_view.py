"""BatchNorm statistics per view or over the concatenated views, as each official code does."""

import pytest
import torch

from selfsup.methods import METHODS
from selfsup.models.resnet import resnet18

PER_VIEW = ("byol", "simsiam", "barlow-twins", "vicreg", "moco-v3")
CONCATENATED = ("simclr",)  # simclr model.py concatenates the 2N views before the encoder
TINY_HEADS = {"byol": {"proj_hidden_dim": 32, "proj_output_dim": 16},
              "simsiam": {"proj_dim": 16, "pred_hidden_dim": 8},
              "barlow-twins": {"proj_hidden_dim": 32, "proj_output_dim": 16},
              "vicreg": {"proj_hidden_dim": 32, "proj_output_dim": 16},
              "moco-v3": {"proj_hidden_dim": 32, "pred_hidden_dim": 32, "out_dim": 16},
              "simclr": {"proj_hidden_dim": 32, "proj_output_dim": 16}}


def backbone_outputs(name: str) -> tuple[list[torch.Tensor], torch.nn.Module, list[torch.Tensor]]:
    """The online backbone's outputs during a two-view training step of a ResNet method (train mode)."""
    torch.manual_seed(0)
    method = METHODS[name]
    m = method(resnet18(in_chans=1, small_stem=True), method.config_class(**TINY_HEADS[name])).train()
    seen: list[torch.Tensor] = []
    hook = m.backbone.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 1, 16, 16, generator=g), torch.randn(8, 1, 16, 16, generator=g) * 3 + 1]
    m.setup(total_steps=4, steps_per_epoch=2)
    m(views, 0)
    hook.remove()
    return seen, m.backbone, views


@pytest.mark.parametrize("name", PER_VIEW)
def test_backbone_batch_norm_sees_each_view_alone(name):
    """Embedding view 1 alone (train mode: batch statistics) gives what the two-view step computed: the
    official codes run one backbone forward per view (e.g. barlowtwins main.py `self.backbone(y1)`,
    `self.backbone(y2)`)."""
    seen, backbone, views = backbone_outputs(name)
    assert seen[0].shape[0] == 8, "the backbone was called on the two views at once"
    with torch.no_grad():
        alone = backbone(views[0])
        together = backbone(torch.cat(views))[:8]
    assert torch.allclose(seen[0], alone, atol=1e-5)
    assert not torch.allclose(seen[0], together, atol=1e-3)  # the test can tell the two apart


@pytest.mark.parametrize("name", CONCATENATED)
def test_simclr_batch_norm_sees_both_views(name):
    seen, backbone, views = backbone_outputs(name)
    with torch.no_grad():
        together = backbone(torch.cat(views))
    assert seen[0].shape[0] == 16 and torch.allclose(seen[0], together, atol=1e-5)
