import pytest
import torch

from selfsup.models.io import BackboneSpec, save_backbone


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small tensors: one thread each."""


@pytest.fixture
def vit_run(tmp_path):
    """A run directory with a random RGB vit-cpu backbone (32 px, patch 8)."""
    torch.manual_seed(0)
    spec = BackboneSpec("vit-cpu", 32, 3, 8, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    save_backbone(spec.build(), spec, tmp_path / "run" / "backbone.safetensors")
    return tmp_path / "run"
