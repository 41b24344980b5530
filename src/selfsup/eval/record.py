"""The result file of one protocol run, `<run>/eval/<protocol>.json`, and its short printed table.

    {"protocol": "linear", "numbers": {"top1": 78.6, ...}, "settings": {...options, chosen values...},
     "data": {"eval": "digits", "pretrain": "fashion-mnist", "n_train": ..., "adaptation": [...],
              "streamed": false, "skipped_files": null},  # streamed folder: unreadable files left out
     "checkpoint": {"run": "runs/x", "sha256": ..., "backbone": "vit-cpu", "feature": "cls", "method": "dino"},
     "seed": 0, "time": "2026-11-23T04:00:00+00:00", "minutes": 0.4}

Files without "numbers" (the flat k-NN summary `selfsup pretrain` writes) are read as their numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from selfsup.eval.context import EvalContext

NUMBER_TYPES = (int, float, bool, type(None))


def _numbers(protocol: str, result: dict[str, Any]) -> dict[str, Any]:
    numbers = {k: v for k, v in result.items() if k != "settings"}
    bad = {k: v for k, v in numbers.items() if not isinstance(v, NUMBER_TYPES)}
    if bad:
        raise TypeError(f"protocol {protocol} returned non-numbers {bad!r}: return numbers, and put anything "
                        "else under 'settings'")
    return numbers


def _data(ctx: EvalContext) -> dict[str, Any]:
    train, test = ctx.splits.train, ctx.splits.test
    return {"eval": ctx.data, "name": ctx.splits.name, "pretrain": ctx.pretrain.get("data"),
            "n_train": len(train), "n_test": len(test) if test is not None else 0,
            "image_size": train.size, "channels": train.channels, "notice": ctx.data_notice(),
            "adaptation": ctx.adaptation, "streamed": ctx.streamed, "skipped_files": ctx.skipped_files}


def _checkpoint(ctx: EvalContext) -> dict[str, Any]:
    spec = ctx.spec
    out = {"run": str(ctx.run_dir), "sha256": ctx.checkpoint, "method": ctx.pretrain.get("method")}
    if spec is not None:
        out.update(backbone=spec.name, feature=spec.feature, img_size=spec.img_size, in_chans=spec.in_chans,
                   patch_size=spec.patch_size, width=spec.width, depth=spec.depth)
    return out


def make_record(protocol: str, ctx: EvalContext, result: dict[str, Any], minutes: float) -> dict[str, Any]:
    """The JSON record of `result` (a protocol's return value) computed in `minutes` with `ctx`."""
    options = dataclasses.asdict(ctx.options) if dataclasses.is_dataclass(ctx.options) else {}
    return {"protocol": protocol, "numbers": _numbers(protocol, result),
            "settings": {**options, **result.get("settings", {})}, "data": _data(ctx),
            "checkpoint": _checkpoint(ctx), "seed": ctx.seed,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "minutes": round(minutes, 3)}


def record_path(run_dir: Path, protocol: str) -> Path:
    return Path(run_dir) / "eval" / f"{protocol}.json"


def write_record(record: dict[str, Any], run_dir: Path) -> Path:
    """Write `<run_dir>/eval/<protocol>.json` (replacing an earlier one) and return its path."""
    path = record_path(run_dir, record["protocol"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A record from its file; a flat legacy summary becomes {"protocol": <file stem>, "numbers": {...}}."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    if "numbers" in raw:
        return raw
    numbers = {k: v for k, v in raw.items() if isinstance(v, NUMBER_TYPES)}
    return {"protocol": Path(path).stem, "numbers": numbers, "settings": {}}


def format_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def format_record(record: dict[str, Any]) -> str:
    """A few lines: what was evaluated on what, then a | metric | value | table."""
    data, ckpt = record["data"], record["checkpoint"]
    source = f" (pre-trained on {data['pretrain']})" if data.get("pretrain") else ""
    source += f", feature {ckpt['feature']}" if ckpt.get("feature") else ""
    lines = [f"{record['protocol']}: {ckpt.get('run')} on {data['eval']}{source}, {data['n_train']} train / "
             f"{data['n_test']} test images, {record['minutes']:.1f} min"]
    lines += [f"  data: {change}" for change in [data.get("notice"), *(data.get("adaptation") or [])] if change]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {format_value(v)} |" for k, v in record["numbers"].items()]
    return "\n".join(lines)


__all__ = ["format_record", "format_value", "make_record", "read_record", "record_path", "write_record"]
