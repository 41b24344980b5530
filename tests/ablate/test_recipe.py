from pathlib import Path

import pytest
import yaml

from selfsup.ablate import ABLATIONS, load_recipe
from selfsup.ablate.recipe import find_recipe
from selfsup.config import ConfigError


def test_every_shipped_recipe_loads_and_builds_its_variants():
    names = sorted(p.stem for p in ABLATIONS.glob("*.yaml"))
    assert names == ["dino-batch-size", "dino-collapse", "dino-components", "dino-multicrop", "dino-patch-size",
                     "dino-teachers", "simsiam-collapse"]
    for name in names:
        recipe = load_recipe(name)
        assert recipe.scaled and recipe.source and recipe.reference in [v.name for v in recipe.variants]
        assert all(v.published is not None for v in recipe.variants)


def test_the_budget_and_seed_are_the_recipes_for_every_variant(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe())
    a, b = (recipe.config(v, tmp_path).to_dict() for v in recipe.variants)
    assert a["optim"]["epochs"] == b["optim"]["epochs"] == pytest.approx(2 / 22) and a["run"]["seed"] == 0
    assert b["dino"]["teacher"] == "copy" and a["run"]["out"] == str(tmp_path / "tiny" / "momentum")
    assert recipe.config(recipe.variants[0], tmp_path, minutes=3).optim.minutes == 3


@pytest.mark.parametrize("changes,message", [
    ({"budget": {"hours": 1}}, "budget: expected {epochs: E} or {minutes: M}"),
    ({"metric": "top5"}, "metric: got 'top5', expected one of knn, linear"),
    ({"reference": "nope"}, "reference: got 'nope'"),
    ({"colour": 1}, "unknown key(s) colour"),
    ({"linear": {"epochs": 0}}, "linear.epochs: got 0"),
    ({"axis": "backbone.nothing"}, "axis: 'backbone.nothing' is not an option"),
    ({"variants": [{"name": "a", "overrides": {"dino": {"teacher": "ema"}}}], "reference": "a"},
     "variants[0] (a): dino.teacher: got 'ema'"),
    ({"variants": [{"name": "a", "overrides": {"optim": {"epochs": 3}}}]}, "variants[0]: overrides.optim.epochs"),
    ({"variants": [{"name": "a", "direction": "up"}]}, "variants[0]: direction: got 'up'"),
    ({"variants": [{"name": "a b"}]}, "variants[0]: name"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants[1]: name: 'a' is used twice"),
])
def test_a_bad_recipe_names_the_file_and_the_key(write_recipe, changes, message):
    path = write_recipe(**changes)
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_a_missing_section_and_an_unknown_recipe_say_what_to_do(tmp_path, tiny_recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in tiny_recipe.items() if k != "variants"}))
    with pytest.raises(ConfigError, match=f"{path}: `variants` is missing"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="neither a file nor a shipped recipe.*dino-components"):
        find_recipe(Path("no-such-recipe"))
