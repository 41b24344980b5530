import pytest

from selfsup.config import RECIPES, ConfigError, build_config, load_yaml, merge, recipe, save_yaml
from selfsup.methods.dino import DinoConfig


def test_defaults_and_sections():
    cfg = build_config({})
    assert cfg.method == "dino" and isinstance(cfg.method_cfg, DinoConfig)
    assert cfg.optim.lr == 0.0005 and cfg.method_cfg.teacher_temp == 0.04


def test_yaml_round_trip(tmp_path):
    cfg = build_config({"optim": {"lr": 0.01}, "dino": {"out_dim": 512}, "views": {"global_scale": [0.3, 1]}})
    save_yaml(cfg, tmp_path / "c.yaml")
    again = build_config(load_yaml(tmp_path / "c.yaml"))
    assert again.to_dict() == cfg.to_dict()
    assert again.views.global_scale == (0.3, 1)


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="unknown option.*teacher_tmp"):
        build_config({"dino": {"teacher_tmp": 0.1}})
    with pytest.raises(ConfigError, match="unknown section.*optimizer"):
        build_config({"optimizer": {}})
    with pytest.raises(ConfigError, match="unknown method 'dinov9'"):
        build_config({"method": "dinov9"})


def test_bad_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_merge_is_nested():
    assert merge({"a": {"x": 1, "y": 2}, "b": 3}, {"a": {"y": 5}}) == {"a": {"x": 1, "y": 5}, "b": 3}


def test_bundled_recipes_build():
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert {"demo", "dino_vit_small"} <= set(names)
    for name in names:
        raw = recipe(name)
        built = build_config(raw, where=name).to_dict()
        assert built["method"] == raw.get("method", "dino")
        for section, values in raw.items():
            if section != "method":
                assert {k: built[section][k] for k in values} == values, f"{name}.yaml [{section}]"


def test_bad_values_are_named_with_where_they_came_from():
    with pytest.raises(ConfigError, match=r"^recipe.yaml: optim.lr: got -1, expected a number > 0$"):
        build_config({"optim": {"lr": -1}}, where="recipe.yaml")
    with pytest.raises(ConfigError, match=r"^config: dino.out_dim: got 0, expected an integer >= 1$"):
        build_config({"dino": {"out_dim": 0}})
    cfg = build_config({"optim": {"lr": "1e-3", "epochs": 2}, "views": {"local_scale": [0.1, 0.5]}})
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.views.local_scale) == (0.001, 2.0, (0.1, 0.5))
    assert isinstance(cfg.optim.epochs, float)
