import pytest
import torch

from selfsup.eval.linear import DEFAULT_LRS, LinearProbes, linear_probe, train_probes


def linear_features(n: int, num_classes: int = 10, dim: int = 32, noise: float = 0.05, seed: int = 0):
    """Features that are a fixed linear map of the one-hot labels, plus small noise: (n, dim), (n,)."""
    mixing = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, num_classes).float()
    return onehot @ mixing + noise * torch.randn(n, dim, generator=g), labels


def test_linearly_separable_features_reach_100():
    train_x, train_y = linear_features(600)
    test_x, test_y = linear_features(200, seed=1)
    r = linear_probe(train_x, train_y, test_x, test_y, num_classes=10, epochs=30)
    assert r["top1"] == 100.0 and r["top5"] == 100.0
    assert r["lr"] in DEFAULT_LRS["sgd"] and set(r["val_top1"]) == {f"{lr:g}" for lr in DEFAULT_LRS["sgd"]}
    assert (r["n_train"], r["n_test"]) == (600, 200) and 50 <= r["n_val"] <= 70
    assert r["settings"]["optimizer"] == "sgd" and r["settings"]["lrs"] == list(DEFAULT_LRS["sgd"])


def test_random_labels_stay_at_chance():
    train_x, _ = linear_features(600)
    test_x, test_y = linear_features(200, seed=1)
    noise_labels = torch.randint(0, 10, (600,), generator=torch.Generator().manual_seed(5))
    r = linear_probe(train_x, noise_labels, test_x, test_y, num_classes=10, lrs=[0.1], epochs=10)
    assert r["top1"] < 30


def test_learning_rate_is_chosen_without_looking_at_test():
    train_x, train_y = linear_features(400, noise=1.5)
    test_x, test_y = linear_features(200, noise=1.5, seed=1)
    lrs = [0.001, 0.1, 10.0]
    a = linear_probe(train_x, train_y, test_x, test_y, 10, lrs=lrs, epochs=10)
    shuffled = test_y[torch.randperm(200, generator=torch.Generator().manual_seed(3))]
    b = linear_probe(train_x, train_y, test_x * -1, shuffled, 10, lrs=lrs, epochs=10)
    assert a["lr"] == b["lr"] and a["val_top1"] == b["val_top1"]
    assert len(set(a["val_top1"].values())) > 1  # the sweep did discriminate
    assert a["top1"] != b["top1"]


def test_one_pass_sweep_equals_separate_runs():
    x, y = linear_features(300, noise=1.0)
    together = train_probes(x, y, 10, [0.03, 0.3], epochs=5, batch_size=64)
    alone = train_probes(x, y, 10, [0.3], epochs=5, batch_size=64)
    assert torch.allclose(together.heads[1].weight, alone.heads[0].weight, atol=1e-5)
    assert not torch.allclose(together.heads[0].weight, alone.heads[0].weight, atol=1e-3)


def test_adamw_and_determinism():
    train_x, train_y = linear_features(300)
    test_x, test_y = linear_features(100, seed=1)
    kw = {"num_classes": 10, "optimizer": "adamw", "epochs": 20, "seed": 7}
    a = linear_probe(train_x, train_y, test_x, test_y, **kw)
    b = linear_probe(train_x, train_y, test_x, test_y, **kw)
    assert a["top1"] == b["top1"] > 95 and a["val_top1"] == b["val_top1"]
    assert a["lr"] in DEFAULT_LRS["adamw"]


def test_probe_is_batchnorm_without_affine_then_linear():
    probes = LinearProbes(16, 4, 3)
    assert not probes.bn.affine and len(probes.heads) == 3
    assert probes(torch.randn(5, 16)).shape == (3, 4, 5)  # class-major logits


def test_one_image_per_class_keeps_the_middle_rate():
    x, y = linear_features(10, noise=0.0)
    y = torch.arange(10)
    r = linear_probe(x, y, x, y, 10, lrs=[0.01, 0.1, 1.0], epochs=50)
    assert r["lr"] == 0.1 and r["val_top1"] == {} and r["n_val"] == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"test_x": torch.ones(5, 3)}, "test_x has dim 3"),
    ({"train_y": torch.zeros(7, dtype=torch.long)}, "train_y must be 1-D integer labels"),
    ({"train_x": torch.ones(20)}, "train_x must be a 2-D"),
    ({"lrs": [0.1, -1.0]}, "lrs must be positive"),
    ({"optimizer": "lars"}, "optimizer must be one of sgd, adamw"),
])
def test_bad_inputs(kwargs, match):
    args = {"train_x": torch.randn(20, 4), "train_y": torch.arange(20) % 2, "test_x": torch.randn(5, 4),
            "test_y": torch.zeros(5, dtype=torch.long)} | kwargs
    with pytest.raises(ValueError, match=match):
        linear_probe(**args, epochs=1)
