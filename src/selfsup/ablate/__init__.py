"""`selfsup ablate RECIPE.yaml ...`: the seeds' ablation tables reproduced at small scale. Each recipe
(recipe.py; shipped ones in configs/ablations/) is a grid of pre-training variants under one budget and seed;
each variant is trained and evaluated (run.py) and read against its network at random init (random_init.py),
then a Markdown report (report.py) and plots (plots.py) put
the seed's number beside ours and say whether the seed's direction holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.ablate.plots import recipe_plots
from selfsup.ablate.random_init import random_init_knn
from selfsup.ablate.recipe import ABLATIONS, AblationRecipe, Variant, load_recipe
from selfsup.ablate.report import holds, table, write_report
from selfsup.ablate.run import AblationError, run_recipe
from selfsup.config import ConfigError


def ablate(recipes: list[str | Path], out: str | Path = "runs/ablate", minutes: float | None = None,
           progress: bool = True) -> dict[str, Any]:
    """Run every variant of each recipe into `out` (finished variants are read back, not rerun) and write
    out/reproduction.md with one table per recipe and its plots; returns a summary."""
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"--minutes must be a positive number of minutes per variant, got {minutes}")
    out = Path(out)
    loaded = [load_recipe(r) for r in recipes]  # every recipe checked before any training
    sections, rows = [], []
    for recipe in loaded:
        results = run_recipe(recipe, out, minutes, progress)
        for v, r in zip(recipe.variants, results, strict=True):
            r["knn_random_top1"] = random_init_knn(recipe, v, out)  # the row's floor (not stored in its file)
        sections.append(table(recipe, results, recipe_plots(recipe, results, out), out))
        ref = results[[v.name for v in recipe.variants].index(recipe.reference)]
        rows += [{"recipe": recipe.name, "variant": v.name, "knn_top1": r["knn_top1"],
                  "linear_top1": r["linear_top1"], "knn_random_top1": r["knn_random_top1"],
                  "holds": holds(recipe, v, r, ref)}
                 for v, r in zip(recipe.variants, results, strict=True)]
    report = write_report(sections, out / "reproduction.md")
    return {"report": str(report), "variants": rows}


__all__ = ["ABLATIONS", "AblationError", "AblationRecipe", "Variant", "ablate", "load_recipe"]
