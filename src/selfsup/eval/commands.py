"""The evaluation commands of the CLI: `selfsup eval PROTOCOL`, `selfsup knn` (its k-NN alias),
`selfsup report RUN...` and `selfsup embed`. `selfsup.cli` registers them; each returns the JSON summary.

A protocol's flags are generated from its options dataclass: a list field takes several values
(`--k 10 20 100`), a bool field gets `--name / --no-name`, and the help shows the default and the paper's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from selfsup.eval.context import DATA_STREAMS
from selfsup.models.vit import POOLS
from selfsup.options import describe
from selfsup.validate import check_options


def _flag_kwargs(hint: Any) -> dict[str, Any]:
    """argparse keywords for a field's type: int, float, str, bool, list[X], tuple[X, ...], and X | None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list or (origin is tuple and (len(args) == 2 and args[1] is Ellipsis)):
        return {"nargs": "+", "type": args[0], "metavar": args[0].__name__.upper()}
    if origin is tuple:
        return {"nargs": len(args), "type": args[0], "metavar": args[0].__name__.upper()}
    return {"type": hint, "metavar": getattr(hint, "__name__", "V").upper()}


def _help(text: str, default: Any, paper: Any) -> str:
    extra = f" (default: {default}" + (f"; paper: {paper})" if paper is not None and paper != default else ")")
    return (text + extra).replace("%", "%%")


def add_option_flags(p: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per field of an options dataclass; unset flags keep the dataclass default."""
    hints = typing.get_type_hints(cls)
    group = p.add_argument_group("protocol options")
    for name, default, text, paper in describe(cls):
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                           help=_help(text, default, paper), **_flag_kwargs(hints[name]))


def flag(name: str) -> str:
    """An option's flag: 'val_fraction' -> '--val-fraction'."""
    return "--" + name.replace("_", "-")


def options_from(cls: type, args: argparse.Namespace) -> Any:
    """The options dataclass from the flags that were given, each checked against its declared type and range
    (a ConfigError names the first bad one); tuples for tuple fields."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**check_options(cls, given, flag))


def add_context_flags(p: argparse.ArgumentParser, data_help: str) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="run directory with backbone.safetensors "
                   "(written by selfsup pretrain)")
    p.add_argument("--data", help=data_help + " (default: the data the run was pre-trained on, from its "
                   "config.yaml); images are brought to the backbone's channels and size")
    p.add_argument("--feature", choices=POOLS, help="the ViT feature to evaluate (default: the run's "
                   "--backbone.pool, saved with its backbone): cls, mean (of the patch tokens), cls+mean (DINO's "
                   "ViT-B probe, avgpool), cls-last4 (DINO's ViT-S probe: CLS tokens of the last 4 blocks "
                   "concatenated) or patches (the patch tokens concatenated: small images only); ResNets always "
                   "average-pool")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets, splits and classifier initialisation")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: a GPU if there is one)")
    p.add_argument("--feature-batch-size", type=int, default=512, help="images per forward pass when extracting "
                   "features (memory only)")
    p.add_argument("--no-cache", action="store_true", help="recompute the features and leave "
                   "RUN/eval/features/ untouched (the cache is keyed by the checkpoint's hash, so it is never "
                   "stale)")
    p.add_argument("--data-stream", choices=DATA_STREAMS, default="auto", help="compute an image folder's frozen "
                   "features batch by batch from its files (decoded by --data-workers processes) instead of "
                   "decoding every image into memory first: only the features and labels are held, so memory no "
                   "longer grows with the number of images, and the features equal the in-memory ones. auto "
                   "streams image folders for the protocols that read features only (knn, linear, transfer, "
                   "fewshot --no-finetune, selfsup knn and embed) and holds everything else in memory (named "
                   "sets, .npz files, CIFAR batches, and folders for fine-tuning, segmentation and video); "
                   "never decodes a folder into memory as before (fastest when it fits in RAM); always insists "
                   "on streaming. Unreadable files are left out, counted in the JSON (data.skipped_files) and "
                   "named in a warning; the feature cache is keyed by the files' names, sizes and times")
    p.add_argument("--data-workers", type=int, default=4, help="streamed folders: DataLoader processes decoding "
                   "files ahead of the backbone (0: decode in this process); raise until images/s stops growing, "
                   "about one per CPU core the backbone leaves free")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _context(args: argparse.Namespace, options: Any = None, stream: str | None = None):
    """The context of the flags; `stream` overrides --data-stream (a protocol that reads images: "never")."""
    from selfsup.eval.context import build_context

    return build_context(args.checkpoint, args.data, options, args.device, args.seed, args.feature_batch_size,
                         cache=not args.no_cache, feature=args.feature, data_stream=stream or args.data_stream,
                         data_workers=args.data_workers)


def _print_notices(ctx) -> None:
    """The data source's notice (with the files a stream skipped) and the adaptation made, one `notice:` line
    each on stderr."""
    for note in [ctx.data_notice(), *ctx.adaptation]:
        if note:
            print(f"notice: {note}", file=sys.stderr)


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    from selfsup.eval.protocols import PROTOCOLS

    ev = sub.add_parser("eval", help="evaluate a pre-trained backbone with a protocol; writes RUN/eval/PROTOCOL.json",
                        description="Evaluation protocols: " + "; ".join(
                            f"{n}: {p.help}" for n, p in PROTOCOLS.items()).replace("%", "%%"))
    protocols = ev.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for name, protocol in PROTOCOLS.items():
        p = protocols.add_parser(name, help=protocol.help.replace("%", "%%"), description=protocol.help.replace(
            "%", "%%") + f". Writes RUN/eval/{name}.json and prints a table.")
        add_context_flags(p, "labelled dataset to evaluate on")
        add_option_flags(p, protocol.options)


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.eval.protocols import data_stream, get_protocol, run_protocol

    options = options_from(get_protocol(args.protocol).options, args)
    return run_protocol(args.protocol, _context(args, options, data_stream(args.protocol, options, args.data_stream)))


def add_knn_parser(sub: argparse._SubParsersAction) -> None:
    knn = sub.add_parser("knn", help="weighted k-NN top-1 of a pre-trained backbone on a dataset's test split "
                         "(same as: selfsup eval knn)")
    add_context_flags(knn, "dataset whose train split is the memory bank")
    knn.add_argument("--k", type=int, default=20, help="neighbours (DINO: 20); `selfsup eval knn` takes several")
    knn.add_argument("--temperature", type=float, default=0.07, help="vote weight exp(sim/T) (DINO: 0.07)")


def cmd_knn(args: argparse.Namespace) -> dict[str, Any]:
    """`selfsup eval knn` with one k; prints one line and returns the flat k-NN summary."""
    from selfsup.eval.knn import KnnOptions
    from selfsup.eval.protocols import run_protocol

    ctx = _context(args, KnnOptions(**check_options(KnnOptions, {"k": [args.k], "temperature": args.temperature},
                                                    flag)))
    record = run_protocol("knn", ctx, echo=False)
    _print_notices(ctx)
    s, n = record["settings"], record["numbers"]
    result = {"top1": n["top1"], "top5": n["top5"], "k": s["k_effective"][0], "temperature": s["temperature"],
              "n_train": s["n_train"], "n_test": s["n_test"]}
    if ctx.streamed:
        result["skipped_files"] = ctx.skipped_files
    print(f"k-NN on {record['data']['name']}: top-1 {result['top1']:.2f}% (k={result['k']}, "
          f"T={result['temperature']}, {result['n_train']} train / {result['n_test']} test)")
    return result


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="gather RUN/eval/*.json of several runs into one Markdown table and a "
                         "bar plot")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run directories evaluated with selfsup eval")
    rep.add_argument("--out", type=Path, help="Markdown file to write (the table is printed either way)")
    rep.add_argument("--plot", type=Path, help="bar plot PNG (default: --out with a .png suffix; none without "
                     "--out)")
    rep.add_argument("--metric", default="top1", help="metrics whose name contains this become columns "
                     "(top1, top5, or a full name such as linear_10pct_top1)")
    rep.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.eval.report import report

    plot = args.plot or (args.out.with_suffix(".png") if args.out is not None else None)
    print(report(args.runs, args.out, plot, args.metric), end="")
    return {"runs": [str(r) for r in args.runs], "out": str(args.out) if args.out else None,
            "plot": str(plot) if plot else None}


def add_embed_parser(sub: argparse._SubParsersAction) -> None:
    from selfsup.eval.embed import METHODS

    emb = sub.add_parser("embed", help="save a backbone's features of a split as .npy and draw a 2-D map")
    add_context_flags(emb, "dataset to embed (labels colour the map; unlabelled data works too)")
    emb.add_argument("--split", choices=("train", "test"), default="test", help="which split to embed")
    emb.add_argument("--out", type=Path, required=True, help="embeddings file (N, D) float32 .npy; labels go to "
                     "<stem>_labels.npy")
    emb.add_argument("--map", type=Path, help="also draw a 2-D map of the embeddings coloured by label (PNG)")
    emb.add_argument("--method", choices=METHODS, default="pca", help="pca (instant) or tsne (clusters show "
                     "better; about a minute for 5000 points on 2 cores)")
    emb.add_argument("--max-points", type=int, default=5000, help="points drawn on the map (a random subset; all "
                     "embeddings are saved). Raise for PCA; t-SNE grows quadratically")


def cmd_embed(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.eval.context import EvalError
    from selfsup.eval.embed import plot_map, project_2d, save_embeddings, subsample

    if args.max_points < 3:
        raise EvalError(f"--max-points must be at least 3, got {args.max_points}")
    ctx = _context(args)
    x, y = ctx.features(args.split, labelled=False)  # (N, D), (N,) or None
    files = save_embeddings(x, y, args.out)
    summary = {"out": str(files[0]), "labels": str(files[1]) if len(files) > 1 else None, "n": len(x),
               "dim": x.shape[1], "map": None}
    if args.map is not None:
        idx = subsample(len(x), args.max_points, args.seed)
        points = project_2d(x[idx].numpy(), args.method, args.seed)
        title = f"{args.checkpoint} on {ctx.data} ({args.split}, {args.method}, {len(idx)} points)"
        plot_map(points, None if y is None else y[idx].numpy(), args.map, ctx.split(args.split, False).classes,
                 title)
        summary["map"] = str(args.map)
    _print_notices(ctx)
    print(f"embeddings {tuple(x.shape)} -> {files[0]}" + (f"; map -> {args.map}" if args.map else ""))
    return summary


__all__ = ["add_embed_parser", "add_eval_parser", "add_knn_parser", "add_option_flags", "add_report_parser",
           "cmd_embed", "cmd_eval", "cmd_knn", "cmd_report", "options_from"]
