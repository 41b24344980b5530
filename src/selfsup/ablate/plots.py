"""The figures of `selfsup ablate`, one PNG per kind a recipe's results allow: h and KL over training
(DINO), teacher and student k-NN over training, accuracy against time and memory, and accuracy against the
recipe's axis (patch size, batch size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.ablate.recipe import AblationRecipe, axis_value
from selfsup.ablate.report import LABEL, metric


def _plt() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first use, as the other figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(result: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    points = [(line["step"], line[key]) for line in result["curve"] if key in line]
    return [p[0] for p in points], [p[1] for p in points]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def entropy_plot(names: list[str], results: list[dict[str, Any]], path: Path) -> Path | None:
    """h(P_t) and KL(P_t || P_s) against the step, one line per variant (fig. 5.10)."""
    if not any(_series(r, "teacher_entropy")[0] for r in results):
        return None
    fig, axes = _plt().subplots(1, 2, figsize=(10, 3.6))
    for name, r in zip(names, results, strict=True):
        for ax, key in zip(axes, ("teacher_entropy", "teacher_student_kl"), strict=True):
            ax.plot(*_series(r, key), label=name)
    log_k = next((line["log_K"] for r in results for line in r["curve"] if "log_K" in line), None)
    if log_k is not None:
        axes[0].axhline(log_k, color="grey", ls=":", label="log K")
    for ax, title in zip(axes, ("teacher entropy h(P_t)", "KL(P_t || P_s)"), strict=True):
        ax.set(title=title, xlabel="step", ylabel="nats")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def knn_plot(names: list[str], results: list[dict[str, Any]], path: Path) -> Path | None:
    """Teacher (solid) and student (dashed) k-NN top-1 against the step (fig. 5.9)."""
    if not any(_series(r, "knn_student_top1")[0] for r in results):
        return None
    fig, ax = _plt().subplots(figsize=(8, 4))
    for name, r in zip(names, results, strict=True):
        line = ax.plot(*_series(r, "knn_top1"), marker="o", label=f"{name}: teacher")[0]
        ax.plot(*_series(r, "knn_student_top1"), ls="--", marker="x", color=line.get_color(),
                label=f"{name}: student")
    ax.set(xlabel="step", ylabel="k-NN top-1 (%)", title="teacher and student during training")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves, not over them
    return _save(fig, path)


def cost_plot(recipe: AblationRecipe, results: list[dict[str, Any]], path: Path) -> Path:
    """The recipe's metric against training minutes and peak memory, one point per variant (table 5.3)."""
    fig, axes = _plt().subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in zip(axes, ("train_minutes", "peak_memory_mib"), ("training minutes", "peak memory "
                              f"(MiB, {results[0].get('memory', '')})"), strict=True):
        for v, r in zip(recipe.variants, results, strict=True):
            y = metric(r, recipe.metric)
            if y is not None:
                ax.scatter(r[key], y)
                ax.annotate(v.name, (r[key], y), fontsize=8)
        ax.set(xlabel=label, ylabel=f"{LABEL[recipe.metric]} top-1 (%)")
    return _save(fig, path)


def axis_plot(recipe: AblationRecipe, results: list[dict[str, Any]], path: Path) -> Path | None:
    """The recipe's metric against its axis (e.g. backbone.patch_size: fig. 5.8; optim.batch_size: table 5.4),
    with each row's random-init k-NN where known (a patch size changes the floor as well as the result)."""
    if recipe.axis is None:
        return None
    fig, ax = _plt().subplots(figsize=(5, 3.6))
    for key, label, style in ((recipe.metric, f"trained: {LABEL[recipe.metric]}", "-"),
                              ("knn_random", "random init: k-NN", ":")):
        points = sorted((axis_value(r["config"], recipe.axis), metric(r, key)) for r in results
                        if metric(r, key) is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ls=style, label=label)
    ax.set(xlabel=recipe.axis, ylabel="top-1 (%)", title=recipe.title or recipe.name)
    ax.legend(fontsize=8)
    return _save(fig, path)


def recipe_plots(recipe: AblationRecipe, results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Every plot the results allow, as folder/<recipe>-<kind>.png."""
    names = [v.name for v in recipe.variants]
    folder.mkdir(parents=True, exist_ok=True)
    made = [entropy_plot(names, results, folder / f"{recipe.name}-entropy.png"),
            knn_plot(names, results, folder / f"{recipe.name}-knn.png"),
            cost_plot(recipe, results, folder / f"{recipe.name}-cost.png"),
            axis_plot(recipe, results, folder / f"{recipe.name}-axis.png")]
    return [p for p in made if p is not None]
