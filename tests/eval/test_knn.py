import math

import pytest
import torch

from selfsup.eval import KnnResult, knn_classify, knn_predict
from selfsup.eval.knn import default_chunk_size


def clustered(n: int, num_classes: int, dim: int, noise: float, seed: int,
              every_class: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around fixed class centres (the centres depend only on num_classes and dim)."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    if every_class:
        labels = torch.arange(n) % num_classes
    return centres[labels] + noise * torch.randn(n, dim, generator=g), labels


def reference_knn(train, train_labels, test, k, temperature):
    """Slow loop-based weighted k-NN in float64: (top-1 predictions, top-5 class lists)."""
    def unit(row):
        norm = math.sqrt(sum(v * v for v in row))
        return [v / norm for v in row]

    train = [unit(r) for r in train.double().tolist()]
    preds, top5s = [], []
    for q in test.double().tolist():
        q = unit(q)
        sims = [(sum(a * b for a, b in zip(q, t, strict=True)), i) for i, t in enumerate(train)]
        sims.sort(key=lambda s: -s[0])
        votes: dict[int, float] = {}
        for sim, i in sims[:k]:
            label = int(train_labels[i])
            votes[label] = votes.get(label, 0.0) + math.exp(sim / temperature)
        ranked = sorted(votes, key=lambda c: (-votes[c], c))
        preds.append(ranked[0])
        top5s.append(ranked[:5])
    return preds, top5s


# Hand-computed toy set (2-D): the query at 30 degrees has cosines 0.866 to (1, 0) [class 0], 0.5 to each of
# the two (0, y) points [class 1] and -0.866 to (-1, 0) [class 2]. With k = 3, class 0 gets exp(0.866 / T) and
# class 1 gets 2 exp(0.5 / T): T = 0.07 -> 2.4e5 vs 2.5e3 (class 0 wins); T = 1 -> 2.38 vs 3.30 (class 1).
# The second query (-0.6, 0.8) has cosines 0.8, 0.8 to class 1 and 0.6 to class 2: class 1 for any T.
TOY_TRAIN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
TOY_LABELS = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)], [-0.6, 0.8]])


def test_toy_known_answer():
    assert knn_predict(TOY_TRAIN, TOY_LABELS, QUERY, k=3, temperature=0.07).tolist() == [0, 1]
    assert knn_predict(TOY_TRAIN, TOY_LABELS, QUERY, k=3, temperature=1.0).tolist() == [1, 1]
    assert knn_predict(TOY_TRAIN, TOY_LABELS, QUERY, k=1, temperature=1.0).tolist() == [0, 1]
    res = knn_classify(TOY_TRAIN, TOY_LABELS, QUERY, torch.tensor([0, 1]), k=3, temperature=0.07)
    assert res.top1 == 100.0 and res.top5 is None  # 3 classes: no top-5
    res = knn_classify(TOY_TRAIN, TOY_LABELS, QUERY, torch.tensor([0, 1]), k=3, temperature=1.0)
    assert res.top1 == 50.0


def test_matches_loop_reference_on_random_data():
    train, train_labels = clustered(150, 10, 12, noise=1.5, seed=0)
    test, test_labels = clustered(50, 10, 12, noise=1.5, seed=1)
    for k, temperature in [(20, 0.07), (7, 0.5), (3, 0.02)]:
        preds, top5s = reference_knn(train, train_labels, test, k, temperature)
        assert knn_predict(train, train_labels, test, k=k, temperature=temperature).tolist() == preds
        res = knn_classify(train, train_labels, test, test_labels, k=k, temperature=temperature)
        y = test_labels.tolist()
        assert res.top1 == pytest.approx(100 * sum(p == t for p, t in zip(preds, y, strict=True)) / 50)
        assert res.top5 == pytest.approx(100 * sum(t in c for c, t in zip(top5s, y, strict=True)) / 50)
        assert 0 < res.top1 < res.top5 < 100  # a non-trivial case


def test_chunking_gives_identical_results():
    train, train_labels = clustered(120, 8, 10, noise=2.0, seed=2)
    test, test_labels = clustered(40, 8, 10, noise=2.0, seed=3)
    runs = [knn_predict(train, train_labels, test, k=10, chunk_size=c) for c in (1, 7, 40, None, 10**6)]
    assert all(torch.equal(r, runs[0]) for r in runs)
    results = [knn_classify(train, train_labels, test, test_labels, k=10, chunk_size=c) for c in (1, 7, None)]
    assert all(r == results[0] for r in results)


def test_invariant_to_feature_scaling():
    train, train_labels = clustered(100, 6, 8, noise=2.0, seed=4)
    test, _ = clustered(30, 6, 8, noise=2.0, seed=5)
    scale = torch.rand(100, 1, generator=torch.Generator().manual_seed(6)) * 100 + 0.01
    a = knn_predict(train, train_labels, test, k=10)
    b = knn_predict(train * scale, train_labels, test * 1000, k=10)
    assert torch.equal(a, b)


def test_thousand_classes_and_top5():
    train, train_labels = clustered(3000, 1000, 64, noise=0.1, seed=7, every_class=True)
    test, test_labels = clustered(500, 1000, 64, noise=0.1, seed=8)
    res = knn_classify(train, train_labels, test, test_labels, k=20, num_classes=1000, chunk_size=128)
    assert res.top1 == 100.0 and res.top5 == 100.0
    assert (res.n_train, res.n_test, res.k) == (3000, 500, 20)
    shuffled = test_labels[torch.randperm(500, generator=torch.Generator().manual_seed(9))]
    wrong = knn_classify(train, train_labels, test, shuffled, k=20, num_classes=1000)
    assert wrong.top1 <= wrong.top5 < 10


def test_top5_counts_only_voted_classes():
    # k = 2 with 6 classes: only 2 classes get votes, so a label outside them is never a top-5 hit
    train = torch.eye(6)
    labels = torch.arange(6)
    test = torch.tensor([[1.0, 0.9, 0.0, 0.0, 0.0, 0.0]])
    assert knn_classify(train, labels, test, torch.tensor([1]), k=2).as_dict()["top5"] == 100.0
    assert knn_classify(train, labels, test, torch.tensor([5]), k=2).top5 == 0.0


def test_k_larger_than_train_is_clipped_and_reported():
    res = knn_classify(TOY_TRAIN, TOY_LABELS, QUERY, torch.tensor([0, 1]), k=50, temperature=0.07)
    assert res.k == 4
    assert res.as_dict() == {"top1": res.top1, "top5": None, "k": 4, "temperature": 0.07, "n_train": 4,
                             "n_test": 2}
    assert isinstance(res, KnnResult)


def test_ties_go_to_lowest_class():
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert knn_predict(train, torch.tensor([3, 1]), torch.tensor([[1.0, 0.0]]), k=2).tolist() == [1]


def test_num_classes_and_label_dtypes():
    train, labels = TOY_TRAIN, TOY_LABELS.int()
    res = knn_classify(train, labels, QUERY, torch.tensor([0, 1], dtype=torch.uint8), k=3, num_classes=10)
    assert res.top1 == 100.0 and res.top5 == 100.0
    # a test class absent from train (inferred num_classes 3) is simply an error
    assert knn_classify(train, labels, QUERY, torch.tensor([7, 1]), k=3).top1 == 50.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"train_labels": torch.tensor([0, 1, 1])}, "train_labels has 3 entries but train_features has 4 rows"),
    ({"test_labels": torch.tensor([0])}, "test_labels has 1 entries but test_features has 2 rows"),
    ({"test_features": torch.ones(2, 3)}, "test_features has dim 3"),
    ({"train_features": torch.ones(4)}, "train_features must be a 2-D"),
    ({"train_labels": torch.tensor([0.0, 1, 1, 2])}, "train_labels must be a 1-D integer"),
    ({"test_labels": torch.tensor([0, -1])}, "test_labels must be non-negative"),
    ({"k": 0}, "k must be >= 1"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"num_classes": 2}, "train_labels has class 2 but num_classes is 2"),
    ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ({"test_features": torch.ones(0, 2), "test_labels": torch.ones(0, dtype=torch.long)},
     "test_features is empty"),
])
def test_validation_errors(kwargs, match):
    args = {"train_features": TOY_TRAIN, "train_labels": TOY_LABELS, "test_features": QUERY,
            "test_labels": torch.tensor([0, 1])} | kwargs
    with pytest.raises(ValueError, match=match):
        knn_classify(**args)


def test_default_chunk_size_bounds_memory():
    assert default_chunk_size(1_281_167, 1000) * 1_281_167 * 4 <= 256 * 2**20
    assert default_chunk_size(10, 2) == 256 * 2**20 // 40
    assert default_chunk_size(10**9, 10) == 1
