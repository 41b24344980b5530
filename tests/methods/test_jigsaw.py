import dataclasses

import numpy as np
import pytest
import torch

from selfsup.methods.grid_crops import GridGeometry, fit_to_patches
from selfsup.methods.jigsaw import Jigsaw, JigsawConfig, hamming_permutations, normalize_tiles


def min_hamming(perms: np.ndarray) -> int:
    d = (perms[:, None] != perms[None]).sum(-1)
    return int(d[~np.eye(len(perms), dtype=bool)].min())


def mean_only_greedy(n: int, seed: int) -> np.ndarray:
    """select_permutations.py's 'max' criterion: the largest mean distance to the chosen set."""
    import itertools

    perms = np.array(list(itertools.permutations(range(9))), dtype=np.int8)
    j = int(np.random.default_rng(seed).integers(len(perms)))
    chosen, d_sum, taken = [j], np.zeros(len(perms)), np.zeros(len(perms), dtype=bool)
    for _ in range(n - 1):
        taken[j] = True
        d_sum += (perms != perms[j]).sum(1)
        j = int(np.argmax(np.where(taken, -1, d_sum)))
        chosen.append(j)
    return perms[chosen]


def test_the_permutation_set_is_deterministic_distinct_and_far_apart():
    hamming_permutations.cache_clear()
    perms = hamming_permutations(100, 0)  # its speed is benchmarks' business, not a test's
    assert perms.shape == (100, 9) and np.array_equal(perms, hamming_permutations.__wrapped__(100, 0))
    assert not np.array_equal(perms, hamming_permutations(100, 1))
    assert (np.sort(perms, axis=1) == np.arange(9)).all()  # permutations of range(9)
    assert len({tuple(p) for p in perms}) == 100
    rng = np.random.default_rng(0)
    random_set = np.argsort(rng.random((100, 9)), axis=1)
    assert min_hamming(perms) >= max(min_hamming(random_set), min_hamming(mean_only_greedy(100, 0)))
    assert min_hamming(perms) == 6


@pytest.mark.parametrize("size", [16, 28, 45, 17, 29, 47])  # the last three: a grid 1 px from the view's corner
def test_each_puzzle_position_holds_the_tile_of_the_cell_its_permutation_names(tiny_vit, cell_image, size):
    method = Jigsaw(tiny_vit, JigsawConfig(n_permutations=20, tile_dim=8, hidden_dim=8))
    x = cell_image(6, size)
    labels, offsets = method.draw(x)
    puzzles = method.puzzles(x, labels, offsets)  # (B, 9, C, t, t)
    g = method.geometry(size)
    assert puzzles.shape == (6, 9, 3, g.tile, g.tile)
    cells = method.permutations[labels]  # (B, 9)
    want = 10 * cells[..., None] + torch.arange(3)  # (B, 9, C)
    assert torch.equal(puzzles, want[..., None, None].float().expand_as(puzzles))


def test_tiles_sizes_at_small_and_paper_sizes():
    assert GridGeometry.of(16, 0.33) == GridGeometry(cell=5, tile=4, low=0, high=1, origin=0)
    assert GridGeometry.of(28, 0.33) == GridGeometry(cell=9, tile=7, low=0, high=2, origin=0)
    assert GridGeometry.of(255, 0.33) == GridGeometry(cell=85, tile=64, low=0, high=21, origin=0)
    assert GridGeometry.of(17, 0.33) == GridGeometry(cell=5, tile=4, low=0, high=1, origin=1)
    assert GridGeometry.of(29, 0.33) == GridGeometry(cell=9, tile=7, low=0, high=2, origin=1)
    paper_gap = next(f.metadata["paper"] for f in dataclasses.fields(JigsawConfig) if f.name == "gap")
    # Noroozi & Favaro Fig. 3: 64-px tiles in the 75-px cells of a 225-px crop
    assert GridGeometry.of(225, paper_gap) == GridGeometry(cell=75, tile=64, low=0, high=11, origin=0)
    assert fit_to_patches(torch.zeros(2, 1, 7, 7), 7).shape[-1] == 7
    assert fit_to_patches(torch.zeros(2, 1, 6, 6), 7).shape[-1] == 7
    assert fit_to_patches(torch.zeros(2, 1, 3, 3), 4).shape[-1] == 4
    assert fit_to_patches(torch.zeros(2, 1, 3, 3), 1).shape[-1] == 3


def test_each_tile_is_normalised_per_channel():
    tiles = torch.randn(5, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.1]).view(3, 1, 1) + 7
    out = normalize_tiles(tiles)
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(5, 3), atol=1e-5)
    assert torch.allclose(out.std(dim=(-2, -1)), torch.ones(5, 3), atol=1e-5)
    assert torch.equal(normalize_tiles(torch.full((1, 1, 4, 4), 3.0)), torch.zeros(1, 1, 4, 4))  # constant tile


def test_loss_is_the_cross_entropy_of_the_applied_permutation(tiny_vit):
    method = Jigsaw(tiny_vit, JigsawConfig(n_permutations=10, tile_dim=8, hidden_dim=16, dropout=0.0))
    x = torch.randn(4, 1, 16, 16)
    torch.manual_seed(3)
    loss, logs = method([x], 0, diagnostics=True)
    torch.manual_seed(3)
    labels, offsets = method.draw(x)
    tiles = method.puzzles(x, labels, offsets).flatten(0, 1)  # (36, 1, 4, 4): one 4-px ViT patch each
    feats = tiny_vit(normalize_tiles(tiles))
    logits = method.classifier(method.fc6(feats).reshape(4, 9 * 8))
    p = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    assert torch.allclose(loss, -p[torch.arange(4), labels].log().mean(), atol=1e-5)
    assert set(logs) == {"acc", "emb_std", "emb_std_ideal", "emb_rank"}


def test_jigsaw_trains_a_resnet_on_rgb_at_28_px():
    from selfsup.models.resnet import resnet18

    method = Jigsaw(resnet18(in_chans=3), JigsawConfig(n_permutations=10, tile_dim=8, hidden_dim=8))
    loss, _ = method([torch.randn(2, 3, 28, 28)], 0, diagnostics=False)
    loss.backward()
    assert torch.isfinite(loss) and method.backbone.conv1.weight.grad.abs().sum() > 0
