import json

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.eval.embed import plot_map, project_2d, save_embeddings, subsample

PNG = b"\x89PNG\r\n\x1a\n"


def test_subsample_is_deterministic_and_bounded():
    assert torch.equal(subsample(10, 20), torch.arange(10))
    a, b = subsample(100, 30, seed=1), subsample(100, 30, seed=1)
    assert torch.equal(a, b) and len(a.unique()) == 30 and not torch.equal(a, subsample(100, 30, seed=2))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_separates_clusters(method):
    g = np.random.default_rng(0)
    x = np.concatenate([g.normal(0, 0.1, (20, 60)), g.normal(5, 0.1, (20, 60))]).astype(np.float32)
    points = project_2d(x, method)
    assert points.shape == (40, 2)
    gap = np.linalg.norm(points[:20].mean(0) - points[20:].mean(0))
    assert gap > 3 * max(points[:20].std(0).max(), points[20:].std(0).max())


def test_save_and_plot(tmp_path):
    files = save_embeddings(torch.randn(5, 3), torch.arange(5), tmp_path / "emb")
    assert [f.name for f in files] == ["emb.npy", "emb_labels.npy"] and np.load(files[0]).shape == (5, 3)
    path = plot_map(np.random.default_rng(0).normal(size=(5, 2)), np.arange(5), tmp_path / "m.png", ["a"] * 5)
    assert path.read_bytes().startswith(PNG)


def test_cli_embed_saves_embeddings_and_map(tiny_run, tmp_path, capsys):
    out, png = tmp_path / "e" / "emb.npy", tmp_path / "e" / "map.png"
    args = ["embed", "--checkpoint", str(tiny_run), "--out", str(out), "--map", str(png), "--max-points", "30",
            "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.load(out).shape == (50, 128) and np.load(summary["labels"]).shape == (50,)
    assert summary["n"] == 50 and png.read_bytes().startswith(PNG)
    assert main(["embed", "--checkpoint", str(tiny_run), "--out", str(out), "--max-points", "1"]) == 2
    assert "--max-points" in capsys.readouterr().err
