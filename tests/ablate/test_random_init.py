import json

import selfsup.ablate.random_init as random_init
from selfsup.ablate import load_recipe
from selfsup.ablate.random_init import CACHE, random_init_knn


def test_each_distinct_starting_network_is_evaluated_once(write_recipe, tmp_path, monkeypatch):
    """Rows that change only training (teacher, crops) share their floor; a patch size or a seed is another
    network, evaluated on its own; a second call reads the cache."""
    recipe = load_recipe(write_recipe(variants=[
        {"name": "momentum"}, {"name": "copy", "overrides": {"dino": {"teacher": "copy"}, "views": {"n_local": 2}}},
        {"name": "patch-14", "overrides": {"backbone": {"patch_size": 14}}}]))
    calls = []
    real = random_init.knn_of_weights
    monkeypatch.setattr(random_init, "knn_of_weights", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "out"
    floors = [random_init_knn(recipe, v, out) for v in recipe.variants]
    assert len(calls) == 2 and floors[0] == floors[1] != floors[2]
    assert all(0 < f <= 100 for f in floors)
    cache = json.loads((out / CACHE).read_text())
    assert sorted(e["patch_size"] for e in cache.values()) == [7, 14]
    assert [random_init_knn(recipe, v, out) for v in recipe.variants] == floors and len(calls) == 2
    other_seed = load_recipe(write_recipe(name="seeded.yaml", seed=1))
    random_init_knn(other_seed, other_seed.variants[0], out)
    assert len(calls) == 3 and len(json.loads((out / CACHE).read_text())) == 3
