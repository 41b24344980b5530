import pytest

from selfsup.config import build_config


@pytest.fixture
def tiny_cfg(tmp_path):
    """A DINO run on digits small enough to take a second or two per step on 2 CPU cores."""

    def make(**sections):
        raw = {
            "method": "dino",
            "data": {"name": "digits"},
            "backbone": {"name": "vit-cpu", "patch_size": 7, "drop_path": 0.1},
            "views": {"global_size": 28, "local_size": 14, "n_local": 2},
            "optim": {"epochs": 4 / 22, "batch_size": 64, "warmup_epochs": 0.05},
            "run": {"out": str(tmp_path / "run"), "eval_knn": False, "log_every": 1, "checkpoint_every": 100},
            "dino": {"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32},
        }
        for k, v in sections.items():
            raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
        if raw["method"] != "dino":
            raw.pop("dino")
        return build_config(raw)

    return make
