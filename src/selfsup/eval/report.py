"""`selfsup report RUN...`: the `eval/*.json` records of several runs as one Markdown table (one row per run,
one column per protocol metric) and a grouped bar plot (PNG) of the runs by protocol metric.

Columns hold the metrics whose name contains `metric` (default "top1"): "knn top1", "linear top1",
"fewshot linear_1pct_top1" (shown as mean ± std), "transfer on digits knn_top1", ... A protocol evaluated
on other data than the run was pre-trained on names that data in its column.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.eval.context import EvalError, run_info
from selfsup.eval.record import format_value, read_record

STD, MEAN = "_std", "_mean"


@dataclass
class RunResults:
    """The records of one run directory by protocol, with its method and pre-training data."""

    path: Path
    info: dict[str, Any]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str | None = None  # shown instead of the path

    @property
    def label(self) -> str:
        return self.name or str(self.path)


def load_run(path: str | Path, name: str | None = None) -> RunResults:
    """Every `eval/*.json` of a run directory; an EvalError names the directory or file that is missing or bad."""
    path = Path(path)
    files = sorted((path / "eval").glob("*.json"))
    if not files:
        raise EvalError(f"{path} has no eval/*.json results: run `selfsup eval PROTOCOL --checkpoint {path}` first")
    run = RunResults(path, run_info(path), name=name)
    for f in files:
        try:
            record = read_record(f)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise EvalError(f"{f} is not a result file ({e}): delete it or re-run its protocol") from e
        run.records[record.get("protocol", f.stem)] = record
    run.records = _ordered(run.records)
    for record in run.records.values():  # runs without config.yaml (e.g. raw pixels): what the records say
        found = {"method": (record.get("checkpoint") or {}).get("method"),
                 "data": (record.get("data") or {}).get("pretrain")}
        run.info.update({k: v for k, v in found.items() if v and not run.info.get(k)})
    return run


def _column_prefix(run: RunResults, protocol: str, record: dict[str, Any]) -> str:
    data = record.get("data", {})
    evaluated, pretrained = data.get("eval"), data.get("pretrain") or run.info.get("data")
    if evaluated and pretrained and evaluated != pretrained:
        return f"{protocol} on {data.get('name') or evaluated}"
    return protocol


def _ordered(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records in the registry's protocol order, then any others by name."""
    from selfsup.eval.protocols import PROTOCOLS

    order = {name: i for i, name in enumerate(PROTOCOLS)}
    return dict(sorted(records.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _record_cells(run: RunResults, protocol: str, metric: str) -> dict[str, tuple[float | None, float | None]]:
    """{column: (value, std or None)} of one record: the metrics containing `metric`; X_mean and X_std merge."""
    record = run.records[protocol]
    prefix = _column_prefix(run, protocol, record)
    numbers = record.get("numbers", {})
    out = {}
    for key, value in numbers.items():
        if metric not in key or key.endswith(STD) or isinstance(value, bool):
            continue
        name = key[:-len(MEAN)] if key.endswith(MEAN) else key
        std = numbers.get(name + STD) if key.endswith(MEAN) else None
        out[f"{prefix} {name}"] = (value, std)
    return out


def cells(run: RunResults, metric: str = "top1") -> dict[str, tuple[float | None, float | None]]:
    """{column: (value, std or None)} of one run, over all its records."""
    return {k: v for protocol in run.records for k, v in _record_cells(run, protocol, metric).items()}


def columns(runs: list[RunResults], metric: str = "top1") -> list[str]:
    """The union of the runs' columns, protocol by protocol in the registry's order."""
    seen: dict[str, None] = {}
    for protocol in _ordered({p: {} for run in runs for p in run.records}):
        for run in runs:
            if protocol in run.records:
                seen.update(dict.fromkeys(_record_cells(run, protocol, metric)))
    return list(seen)


def _cell(value: tuple[float | None, float | None] | None) -> str:
    if value is None or value[0] is None:
        return "-"
    mean, std = value
    return format_value(float(mean)) + (f" ± {std:.2f}" if std is not None else "")


def markdown_table(runs: list[RunResults], metric: str = "top1") -> str:
    """| run | method | pre-trained on | <column> ... | with one row per run (accuracies in percent)."""
    table = [cells(r, metric) for r in runs]
    cols = columns(runs, metric)
    lines = ["| run | method | pre-trained on | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for run, row in zip(runs, table, strict=True):
        lines.append(f"| {run.label} | {run.info.get('method', '-')} | {run.info.get('data', '-')} | "
                     + " | ".join(_cell(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def bar_plot(runs: list[RunResults], path: Path, metric: str = "top1") -> Path:
    """Grouped bars: one group per column, one bar (with ± std where known) per run; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [cells(r, metric) for r in runs]
    cols = columns(runs, metric)
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) + 2), 4.5))
    for i, (run, row) in enumerate(zip(runs, table, strict=True)):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(cols))]
        values = [row.get(c, (None, None)) for c in cols]
        heights = [v[0] if v[0] is not None else 0.0 for v in values]
        ax.bar(xs, heights, width, label=run.label)
        with_std = [(x, h, v[1]) for x, h, v in zip(xs, heights, values, strict=True) if v[1] is not None]
        if with_std:
            ex, ey, err = zip(*with_std, strict=True)
            ax.errorbar(ex, ey, yerr=err, fmt="none", ecolor="black", capsize=2, lw=1)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("methods by protocol")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(run_dirs: list[str | Path], out: Path | None = None, plot: Path | None = None,
           metric: str = "top1") -> str:
    """The Markdown report of `run_dirs`; written to `out` when given, with the bar plot at `plot` (default:
    `out` with a .png suffix) linked from it."""
    runs = [load_run(d) for d in run_dirs]
    plot = plot or (out.with_suffix(".png") if out is not None else None)
    when = dt.date.today().isoformat()
    text = [f"# Evaluation report ({when})", "",
            f"{metric} accuracy (%) on each protocol's test split; few-shot rows are mean ± std over subsets.", "",
            markdown_table(runs, metric)]
    if plot is not None:
        bar_plot(runs, plot, metric)
        link = plot.name if out is not None and plot.parent.resolve() == out.parent.resolve() else str(plot)
        text += ["", f"![{metric} by protocol]({link})"]
    markdown = "\n".join(text) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown)
    return markdown


__all__ = ["RunResults", "bar_plot", "cells", "columns", "load_run", "markdown_table", "report"]
