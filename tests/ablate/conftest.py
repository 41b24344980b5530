import copy

import pytest
import yaml

TINY_RECIPE = {
    "title": "tiny", "source": "a test", "scaled": "two steps on digits", "metric": "knn", "seed": 0,
    "budget": {"epochs": 2 / 22}, "reference": "momentum", "axis": "views.n_local", "linear": {"epochs": 2},
    "base": {"method": "dino", "data": {"name": "digits"},
             "backbone": {"name": "vit-cpu", "patch_size": 7, "width": 32, "depth": 1},
             "views": {"global_size": 28, "local_size": 14, "n_local": 0},
             "optim": {"batch_size": 64, "warmup_epochs": 0.05},
             "run": {"log_every": 1, "checkpoint_every": 100, "knn_every": 1},
             "dino": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer": 0}},
    "variants": [{"name": "momentum", "published": 72.7},
                 {"name": "copy", "overrides": {"dino": {"teacher": "copy"}, "views": {"n_local": 2}},
                  "published": 0.1, "direction": "lower", "collapse": "none"}],
}


@pytest.fixture
def tiny_recipe():
    """The tiny recipe as a dict (a copy)."""
    return copy.deepcopy(TINY_RECIPE)


@pytest.fixture
def write_recipe(tmp_path):
    """write(**changes) -> the path of the tiny recipe with top-level `changes`."""

    def write(name: str = "tiny.yaml", **changes):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({**TINY_RECIPE, **changes}, sort_keys=False))
        return path

    return write
