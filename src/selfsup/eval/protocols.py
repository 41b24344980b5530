"""The evaluation protocols by name (`selfsup eval PROTOCOL`) and the one function that runs any of them.

Each entry is a `Protocol` (see `context.py`): `run(ctx) -> dict` of numbers (+ optional "settings"), the
dataclass of its options (the CLI makes one flag per field) and a one-line help. `run_protocol` times it,
writes `<run>/eval/<PROTOCOL>.json` (see `record.py`) and prints a short table.

Each protocol's module holds its options, its run and the algorithm behind them (knn.py, linear.py, fewshot.py,
finetune.py, supervised.py, pseudolabel.py, transfer.py, segmentation.py, video.py); option values are checked
against their declarations here, once (`checked`), never by hand in a protocol.

To add a protocol: write `my_protocol(ctx)` and `MyOptions` in its own module under `selfsup/eval/`, then
add `"name": Protocol(my_protocol, MyOptions, "help")` below; pass `features_only=True` if it reads nothing but
`ctx.features(...)`, so that `--data-stream auto` streams image folders for it (`data_stream`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from selfsup.eval.context import DATA_STREAMS, EvalContext, EvalError, Protocol
from selfsup.eval.fewshot import FewshotOptions, features_only, fewshot_protocol
from selfsup.eval.finetune import FinetuneConfig, finetune_protocol
from selfsup.eval.knn import KnnOptions, knn_protocol
from selfsup.eval.linear import LinearOptions, linear_protocol
from selfsup.eval.pseudolabel import PseudolabelOptions, pseudolabel_protocol
from selfsup.eval.record import format_record, make_record, write_record
from selfsup.eval.segmentation import SegmentationOptions, segmentation_protocol
from selfsup.eval.supervised import SupervisedOptions, supervised_protocol
from selfsup.eval.transfer import TransferOptions, transfer_protocol
from selfsup.eval.video import VideoOptions, video_protocol
from selfsup.validate import check_options

PROTOCOLS: dict[str, Protocol] = {
    "knn": Protocol(knn_protocol, KnnOptions, "weighted k-NN on frozen features (DINO: k=20, T=0.07)", pixels=True,
                    features_only=True),
    "linear": Protocol(linear_protocol, LinearOptions, "linear probe on frozen features, lr chosen on a validation "
                       "split of train (MAE's BN probe, DINO's SGD + cosine)", pixels=True, features_only=True),
    "fewshot": Protocol(fewshot_protocol, FewshotOptions, "linear probe and fine-tuning with 1% and 10% of the "
                        "labels, 3 stratified subsets each, mean and std", pixels=True, features_only=features_only),
    "transfer": Protocol(transfer_protocol, TransferOptions, "k-NN and linear probe on another dataset (--data), "
                         "adapted to the backbone's channels and size", features_only=True),
    "finetune": Protocol(finetune_protocol, FinetuneConfig, "fine-tune the whole network with all labels (MAE's "
                         "recipe: AdamW, layer decay, drop path, label smoothing)"),
    "supervised": Protocol(supervised_protocol, SupervisedOptions, "baseline: the same architecture from random "
                           "init trained on all (or --fraction of) the labels; saved as RUN/supervised-FRACTION"),
    "pseudolabel": Protocol(pseudolabel_protocol, PseudolabelOptions, "self-training: fine-tune on --fraction of "
                            "the labels, add confident pseudo-labels (>= --threshold), fine-tune again"),
    "segmentation": Protocol(segmentation_protocol, SegmentationOptions, "Jaccard of each ViT head's [CLS] "
                             "attention mask against object masks (--data cluttered), best head per object as "
                             "DINO"),
    "video": Protocol(video_protocol, VideoOptions, "video object segmentation by label propagation of patch "
                      "features (--data moving), J and F as DAVIS, DINO's recipe"),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise EvalError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def data_stream(name: str, options: Any, mode: str) -> str:
    """The --data-stream protocol `name` runs with under `options` (None: its defaults) when `mode` is asked:
    `mode` where the protocol reads frozen features only, else "never" (its images are held in memory; `mode`
    "always" is then refused)."""
    protocol = get_protocol(name)
    if mode not in DATA_STREAMS:
        raise EvalError(f"--data-stream {mode!r} is unknown: choose one of {', '.join(DATA_STREAMS)}")
    if mode == "never" or not protocol.reads_images(options if options is not None else protocol.options()):
        return mode
    if mode == "always":
        raise EvalError(f"--data-stream always: protocol {name} reads the images themselves with these options, "
                        "not only frozen features, so they must be held in memory: use --data-stream auto (or "
                        "never)" + ("; --no-finetune streams fewshot's linear rows" if name == "fewshot" else ""))
    return "never"


def checked(protocol: Protocol, options: Any) -> Any:
    """`options` (None: the protocol's defaults) checked against their declarations (`opt`'s ranges and choices,
    the annotated types) and converted to them, whether they came from flags, Python or a recipe file: the one
    place a protocol's option values are validated. Raises ConfigError naming the flag."""
    if options is None:
        return protocol.options()
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    return type(options)(**check_options(type(options), values, lambda key: f"--{key.replace('_', '-')}"))


def run_protocol(name: str, ctx: EvalContext, write: bool = True, echo: bool = True) -> dict[str, Any]:
    """Run protocol `name` on `ctx` (its options default to the protocol's defaults) and return the record;
    `write` saves it as `<ctx.run_dir>/eval/<name>.json`, `echo` prints the short table."""
    protocol = get_protocol(name)
    ctx = ctx.with_options(checked(protocol, ctx.options))
    if ctx.spec is None and not protocol.pixels:
        raise EvalError(f"protocol {name} needs a pre-trained backbone, not raw pixels")
    if ctx.streamed and protocol.reads_images(ctx.options):
        raise EvalError(f"protocol {name} reads the images themselves, but --data {ctx.data} is streamed: build its "
                        "context with --data-stream never (data_stream='never'), or auto from the command line")
    start = time.perf_counter()
    result = protocol(ctx)
    record = make_record(name, ctx, result, (time.perf_counter() - start) / 60)
    if write:
        record["file"] = str(write_record(record, ctx.run_dir))
    if echo:
        print(format_record(record))
    return record


__all__ = ["PROTOCOLS", "data_stream", "get_protocol", "run_protocol"]
