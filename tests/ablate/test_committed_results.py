"""The collapse check against the ablation results committed in docs/ablations (written by `selfsup ablate` on
this project's CPU): it flags the runs that collapsed and never a healthy one at any logged step."""

import json
from pathlib import Path

import pytest

from selfsup.ablate import ABLATIONS, load_recipe
from selfsup.ablate.report import collapse_seen
from selfsup.diagnostics import collapse_modes
from selfsup.diagnostics.modes import low_std

RESULTS = Path(__file__).parents[2] / "docs" / "ablations"


def logged(recipe: str, variant: str) -> list[dict]:
    path = RESULTS / recipe / f"{variant}.json"
    if not path.exists():
        pytest.skip(f"{path} is not committed (its recipe is being rerun)")
    return [line for line in json.loads(path.read_text())["curve"] if "loss" in line]


def test_healthy_simsiam_never_looks_collapsed():
    steps = logged("simsiam-collapse", "simsiam")
    assert len(steps) > 10 and all(collapse_modes(s) == [] for s in steps)


@pytest.mark.parametrize("variant", ["no-stop-gradient", "no-predictor"])
def test_simsiam_without_its_safeguards_collapses_by_rank_where_std_misses_it(variant):
    steps = logged("simsiam-collapse", variant)
    assert collapse_seen({"curve": steps}) == ["embedding"]
    assert not low_std(steps[-1])  # the std alone (SimSiam's measure at a tenth of 1/sqrt(d)) misses it


def test_no_reference_row_ever_looks_collapsed():
    """Every committed recipe's reference row (the seed's healthy run) at every logged step."""
    refs = [(path.stem, recipe.reference) for path in sorted(ABLATIONS.glob("*.yaml"))
            if (RESULTS / path.stem / f"{(recipe := load_recipe(path)).reference}.json").exists()]
    assert len(refs) >= 2, refs  # simsiam-collapse and dino-collapse at least
    for name, ref in refs:
        assert all(collapse_modes(s) == [] for s in logged(name, ref)), (name, ref)


def test_dino_without_centring_or_sharpening_collapses_its_own_way():
    assert collapse_seen({"curve": logged("dino-collapse", "no-sharpening")}) == ["uniform"]
    assert "one-prototype" in collapse_seen({"curve": logged("dino-collapse", "no-centring")})
