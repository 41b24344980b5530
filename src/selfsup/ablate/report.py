"""The Markdown report of `selfsup ablate`: per recipe, a row per variant with the seed's number, ours, and
whether the seed's direction (against the reference row) and collapse hold here, with time and memory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from selfsup.ablate.recipe import AblationRecipe, Variant
from selfsup.diagnostics import collapse_modes

OTHER = {"knn": "linear", "linear": "knn"}
LABEL = {"knn": "k-NN", "linear": "linear"}


def metric(result: dict[str, Any], name: str) -> float | None:
    """Our top-1 of `name` (knn or linear) in a variant's result."""
    return result.get(f"{name}_top1")


def collapse_seen(result: dict[str, Any]) -> list[str]:
    """The collapse modes of the last logged training interval (diagnostics/modes.py)."""
    logged = [line for line in result["curve"] if "loss" in line]
    return collapse_modes(logged[-1]) if logged else []


def holds(recipe: AblationRecipe, variant: Variant, result: dict[str, Any], reference: dict[str, Any]
          ) -> bool | None:
    """Whether the seed's direction and collapse for the row hold in ours; None when the row claims neither."""
    checks = []
    ours, ref = metric(result, recipe.metric), metric(reference, recipe.metric)
    if variant.direction is not None and ours is not None and ref is not None:
        checks.append({"lower": ours < ref, "higher": ours > ref,
                       "similar": abs(ours - ref) <= recipe.tolerance}[variant.direction])
    if variant.collapse is not None:
        seen = collapse_seen(result)
        checks.append(not seen if variant.collapse == "none" else variant.collapse in seen)
    return all(checks) if checks else None


def _expected(recipe: AblationRecipe, variant: Variant) -> str:
    parts = [f"{variant.direction} than {recipe.reference}" if variant.direction else "",
             f"collapse: {variant.collapse}" if variant.collapse else ""]
    return "; ".join(p for p in parts if p) or ("reference" if variant.name == recipe.reference else "-")


def _changes(variant: Variant) -> str:
    flat = [f"{s}.{k}={v}" for s, opts in variant.overrides.items()
            for k, v in (opts.items() if isinstance(opts, dict) else [("", opts)])]
    return ", ".join(flat).replace("|", "/") or "-"


def _budget(result: dict[str, Any]) -> dict[str, float]:
    """The budget a variant ran with: its minutes (a recipe's or --minutes) or else its epochs."""
    optim = result["config"]["optim"]
    return {"minutes": optim["minutes"]} if optim.get("minutes") is not None else {"epochs": optim["epochs"]}


def _num(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def table(recipe: AblationRecipe, results: list[dict[str, Any]], plots: list[Path], folder: Path) -> str:
    """The recipe's section: its setting, the table and links to its plots (relative to `folder`)."""
    m, other = recipe.metric, OTHER[recipe.metric]
    ref = results[[v.name for v in recipe.variants].index(recipe.reference)]
    budget = ", ".join(f"{v:.3g} {k}" for k, v in _budget(results[0]).items())
    lines = [f"## {recipe.title or recipe.name}", "",
             f"Recipe `{recipe.path.name}`. Seed: {recipe.source or '-'}.", "",
             f"Scaled: {recipe.scaled or '-'}.", "",
             f"Budget: {budget} per variant (the same for every row), seed {recipe.seed}; "
             f"machine: {results[0].get('machine', '?')}.", "",
             f"| variant | changes | seed's {LABEL[m]} | ours {LABEL[m]} | ours {LABEL[other]} | random init k-NN | "
             f"expected | holds | collapse seen | train min | peak MiB |",
             "|---|---|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for v, r in zip(recipe.variants, results, strict=True):
        ok = holds(recipe, v, r, ref)
        lines.append(f"| {v.name} | {_changes(v)} | {_num(v.published)} | {_num(metric(r, m))} | "
                     f"{_num(metric(r, other))} | {_num(metric(r, 'knn_random'))} | {_expected(recipe, v)} | "
                     f"{'-' if ok is None else 'yes' if ok else 'no'} | {', '.join(collapse_seen(r)) or 'none'} | "
                     f"{_num(r['train_minutes'], 2)} | {_num(r['peak_memory_mib'], 0)} |")
    lines += ["", f"Peak memory: {results[0].get('memory', '?')}. Random init k-NN: the row's own network before "
              "its first step (same seed), the floor its training is read against."]
    lines += [f"![{p.stem}]({p.relative_to(folder).as_posix()})" for p in plots]
    notes = notes_path(recipe, folder)
    if notes.exists():  # the reader's explanation of the rows, kept beside the results it explains
        lines += ["", f"Notes ({notes.name}, written after the runs):", "", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def notes_path(recipe: AblationRecipe, folder: Path) -> Path:
    """Where a person's notes on a recipe's results live (<out>/<recipe>.notes.md): why a direction holds or
    not at this scale. The report includes them under the recipe's table; they are never generated."""
    return folder / f"{recipe.name}.notes.md"


def write_report(sections: list[str], path: Path) -> Path:
    """The report file: a heading, then each recipe's section."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"# Ablations reproduced at small scale\n\nWritten by `selfsup ablate` on {when}. A row holds when our "
            "number moves the way the seed's does against the reference row (`similar`: within the recipe's "
            "tolerance) and shows the seed's collapse at the end of training; where it does not, the scale is the "
            "first suspect (see each recipe's `scaled`).\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(sections))
    return path
