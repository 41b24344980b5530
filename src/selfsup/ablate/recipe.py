"""An ablation recipe (`selfsup ablate RECIPE.yaml`): one seed table as a grid of pre-training variants.

    title: DINO components                 # the table's heading in the report
    source: thesis (shared/seeds/003), table 5.2: DeiT-S/16 on ImageNet, 50 epochs, k-NN top-1
    scaled: how the seed's setting was brought to this machine (model, data, budget)
    metric: knn                            # knn or linear: ours beside the seed's number
    seed: 0                                # one seed for every variant
    budget: {epochs: 1}                    # or {minutes: 4}: the same for every variant, never per row
    reference: full                        # the row the directions compare with
    tolerance: 2.0                         # points within which `similar` holds
    axis: backbone.patch_size              # optional: plot the metric against this option
    linear: {epochs: 30}                   # optional: options of the linear probe (selfsup eval linear)
    base: {method: dino, ...}              # a pre-training config, as `selfsup pretrain --config`
    variants:
      - {name: full, published: 72.7}
      - {name: no-momentum, overrides: {dino: {teacher: copy}}, published: 0.1, direction: lower,
         collapse: one-prototype}
`direction` (lower, higher, similar) is what the seed shows for the row against `reference`; `collapse`
(none, embedding, one-prototype, uniform; diagnostics/modes.py) the collapse the seed shows at the end of
training. Every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.config import RECIPES, ConfigError, PretrainConfig, build_config, load_yaml, merge
from selfsup.diagnostics import MODES
from selfsup.eval.linear import LinearOptions
from selfsup.validate import check_options

ABLATIONS = RECIPES / "ablations"  # the shipped recipes, one per seed table
KEYS = ("title", "source", "scaled", "metric", "seed", "budget", "reference", "tolerance", "axis", "linear",
        "base", "variants")
VARIANT_KEYS = ("name", "overrides", "published", "direction", "collapse")
DIRECTIONS = ("lower", "higher", "similar")
COLLAPSES = ("none", *MODES)
METRICS = ("knn", "linear")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a variant's name is its run folder's name


@dataclass
class Variant:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    published: float | str | None = None  # the seed's number for the row (or its words, for a figure)
    direction: str | None = None  # of DIRECTIONS, against the recipe's reference row
    collapse: str | None = None  # of COLLAPSES: the collapse the seed shows at the end of training


@dataclass
class AblationRecipe:
    path: Path
    base: dict[str, Any]
    budget: dict[str, float]
    variants: list[Variant]
    reference: str
    title: str = ""
    source: str = ""
    scaled: str = ""
    metric: str = "knn"
    seed: int = 0
    tolerance: float = 2.0
    axis: str | None = None
    linear: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def config(self, variant: Variant, out: Path, minutes: float | None = None) -> PretrainConfig:
        """The pre-training config of `variant`, run in out/<recipe>/<variant>; `minutes` replaces the budget."""
        budget = {"minutes": minutes} if minutes is not None else self.budget
        raw = merge(merge(self.base, variant.overrides), {
            "optim": {"minutes": budget.get("minutes"), **({"epochs": budget["epochs"]} if "epochs" in budget else {})},
            "run": {"seed": self.seed, "out": str(out / self.name / variant.name), "eval_knn": True}})
        i = self.variants.index(variant)
        return build_config(raw, where=f"{self.path}: variants[{i}] ({variant.name})")


def find_recipe(name: str | Path) -> Path:
    """A recipe file, or the name of a shipped one (configs/ablations/NAME.yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = ABLATIONS / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in ABLATIONS.glob("*.yaml")))
    raise ConfigError(f"recipe {name} is neither a file nor a shipped recipe: pass a YAML file or one of {known}")


def load_recipe(name: str | Path) -> AblationRecipe:
    """Read and check a recipe; every variant's config is built, so a bad key fails before any training."""
    path = find_recipe(name)
    raw = load_yaml(path)
    _known(raw, KEYS, str(path))
    for key in ("base", "budget", "variants"):
        if key not in raw:
            raise ConfigError(f"{path}: `{key}` is missing: see the recipes in {ABLATIONS} for the layout")
    variants = _variants(raw["variants"], path)
    linear = _mapping(raw, "linear", path)
    _known(linear, [f.name for f in dataclasses.fields(LinearOptions)], f"{path}: linear")
    recipe = AblationRecipe(
        path=path, base=_mapping(raw, "base", path), budget=_budget(raw["budget"], path), variants=variants,
        reference=_choice(raw.get("reference", variants[0].name), [v.name for v in variants], f"{path}: reference"),
        metric=_choice(raw.get("metric", "knn"), METRICS, f"{path}: metric"),
        seed=_number(raw.get("seed", 0), f"{path}: seed", int, low=0),
        tolerance=_number(raw.get("tolerance", 2.0), f"{path}: tolerance", float, low=0),
        linear=check_options(LinearOptions, linear, lambda k: f"{path}: linear.{k}"),
        **{k: raw[k] for k in ("title", "source", "scaled", "axis") if k in raw})
    for variant in recipe.variants:
        cfg = recipe.config(variant, Path("."))
        if recipe.axis is not None:
            _axis_value(cfg, recipe.axis, path)
    return recipe


def axis_value(config: dict[str, Any], axis: str) -> Any:
    """The value of a dotted option (e.g. backbone.patch_size) in a config dict (PretrainConfig.to_dict())."""
    section, _, option = axis.partition(".")
    return (config.get(section) or {}).get(option)


def _axis_value(cfg: PretrainConfig, axis: str, path: Path) -> None:
    section, _, option = axis.partition(".") if isinstance(axis, str) else ("", "", "")
    if option not in (cfg.to_dict().get(section) or {}):
        raise ConfigError(f"{path}: axis: {axis!r} is not an option: write section.option, e.g. "
                          "backbone.patch_size or optim.batch_size")


def _variants(raw: Any, path: Path) -> list[Variant]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: variants: expected a non-empty list of {{name: ..., overrides: ...}}")
    out: list[Variant] = []
    for i, item in enumerate(raw):
        where = f"{path}: variants[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not NAME.match(item["name"]):
            raise ConfigError(f"{where}: name: each variant needs a name of letters, digits, '.', '_' or '-'")
        _known(item, VARIANT_KEYS, where)
        if item["name"] in [v.name for v in out]:
            raise ConfigError(f"{where}: name: {item['name']!r} is used twice: give each variant its own name")
        overrides = _mapping(item, "overrides", where)
        budget = [k for k in ("epochs", "minutes") if k in (overrides.get("optim") or {})]
        if budget or {"seed", "out"} & set(overrides.get("run") or {}):
            key = f"optim.{budget[0]}" if budget else "run.seed/run.out"
            raise ConfigError(f"{where}: overrides.{key}: budget, seed and folder are the recipe's, the same for "
                              "every variant: set them at the top of the recipe")
        out.append(Variant(item["name"], overrides, item.get("published"),
                           _choice(item.get("direction"), DIRECTIONS, f"{where}: direction", optional=True),
                           _choice(item.get("collapse"), COLLAPSES, f"{where}: collapse", optional=True)))
    return out


def _budget(raw: Any, path: Path) -> dict[str, float]:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("epochs", "minutes"):
        raise ConfigError(f"{path}: budget: expected {{epochs: E}} or {{minutes: M}}, got {raw!r}")
    key, value = next(iter(raw.items()))
    return {key: _number(value, f"{path}: budget.{key}", float, above=0)}


def _mapping(raw: dict[str, Any], key: str, where: str | Path) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}")
    return value


def _known(raw: dict[str, Any], keys: Any, where: str) -> None:
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(keys)}")


def _choice(value: Any, choices: Any, where: str, optional: bool = False) -> Any:
    if (value is None and optional) or value in choices:
        return value
    raise ConfigError(f"{where}: got {value!r}, expected one of {', '.join(map(str, choices))}")


def _number(value: Any, where: str, kind: type, low: float | None = None, above: float | None = None) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value))
    if not ok or (low is not None and value < low) or (above is not None and value <= above):
        bound = f" >= {low:g}" if low is not None else f" > {above:g}" if above is not None else ""
        raise ConfigError(f"{where}: got {value!r}, expected {'an integer' if kind is int else 'a number'}{bound}")
    return kind(value)
