"""The reconstruction figure draws its masks from its own seed and leaves every RNG of the run as it found it."""

import contextlib

import pytest
import torch

from selfsup.data.views import MultiCropViews, ViewsConfig
from selfsup.insight import reconstruction
from selfsup.methods.mae import MAE, MAEConfig
from selfsup.models.vit import VisionTransformer


def figure_of(tmp_path, device: str = "cpu"):
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    method = MAE(vit, MAEConfig(decoder_dim=16, decoder_depth=1, decoder_head_dim=8)).to(device)
    views = MultiCropViews(ViewsConfig(global_size=16, local_size=8), 1, [0.5], [0.25]).to(device)
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    return lambda: reconstruction.save_reconstructions(method, images, views, 16, tmp_path / "r.png", seed=3)


def test_the_figure_leaves_the_cpu_generator_as_it_was(tmp_path):
    draw = figure_of(tmp_path)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    assert draw().exists()
    assert torch.equal(torch.get_rng_state(), state)


def test_the_figure_forks_the_cuda_generators_too(tmp_path, monkeypatch):
    """torch.manual_seed(seed) reseeds every CUDA generator as well: the fork must cover them (here a
    machine with 2 GPUs is pretended, and the devices handed to fork_rng are recorded)."""
    draw, forked, real = figure_of(tmp_path), [], torch.random.fork_rng

    @contextlib.contextmanager
    def recording(devices=None, **kwargs):
        forked.append(list(devices))
        with real(devices=[], **kwargs):
            yield

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.random, "fork_rng", recording)
    draw()
    assert forked == [[0, 1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_figure_leaves_the_cuda_generators_as_they_were(tmp_path):
    draw = figure_of(tmp_path, "cuda")
    torch.cuda.manual_seed_all(11)
    states = [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())]
    draw()
    assert all(torch.equal(torch.cuda.get_rng_state(d), s) for d, s in enumerate(states))
