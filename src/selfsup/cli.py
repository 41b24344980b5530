"""Command line: `selfsup demo | pretrain | distill | eval PROTOCOL | knn | report | embed | attention | serve |
ablate | convert | export`. Every command's last line is JSON with --json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from selfsup.config import ConfigError, RunConfig, build_config, load_yaml, merge, option_classes, recipe
from selfsup.eval import commands
from selfsup.methods import METHODS
from selfsup.models import commands as weights
from selfsup.options import describe
from selfsup.validate import check_sections

# Short flags for the options people change most; every option also has a --section.name form.
SHORTCUTS = {"data": ("data", "name"), "backbone": ("backbone", "name"), "patch_size": ("backbone", "patch_size"),
             "epochs": ("optim", "epochs"), "minutes": ("optim", "minutes"), "batch_size": ("optim", "batch_size"),
             "lr": ("optim", "lr"), "seed": ("run", "seed"), "devices": ("run", "devices"),
             "num_nodes": ("run", "num_nodes"), "out": ("run", "out"), "init": ("backbone", "init"),
             "init_from": ("backbone", "init_from")}


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (an unknown --dino.momentum is named as unknown, not taken for
    --dino.momentum-teacher) and with one-line errors; sub-parsers are made of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Given(argparse.Action):
    """Stores the value and remembers the flag as the user wrote it (--lr or --optim.lr), so that an error
    can name it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if self.nargs == "+":  # a list option: `--views.global-scale 0.5 1` or `--views.global-scale [0.5, 1]`
            values = values[0] if len(values) == 1 else values
        setattr(namespace, self.dest, values)
        namespace.flags = {**getattr(namespace, "flags", {}), self.dest: option_string}


def _value(text: str) -> Any:
    """Option values are read as YAML scalars/lists: 0.1, 8, true, [0.4, 1.0], null, vit-small."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a value (write 0.1, 8, true, [0.4, 1.0], null or "
                                         "a name)") from None


def _help(help_text: str, default: Any, paper: Any, label: str = "default") -> str:
    extra = f" ({label}: {default}" + (f"; paper: {paper})" if paper is not None and paper != default else ")")
    return (help_text + extra).replace("%", "%%")


def add_config_options(p: argparse.ArgumentParser, method: str | None = None) -> None:
    """--section.option flags for every declared option, generated from the dataclasses. With `method`, the help
    shows the values that method's recipe sets where they differ from the option's own default (`selfsup
    pretrain --method simclr --help` shows LARS at 0.3, not AdamW's 0.0005)."""
    recipe = method_defaults(method)
    for section, cls in option_classes().items():
        group = p.add_argument_group(f"{section} options")
        listed = list_options(cls)
        for name, default, text, paper in describe(cls):
            shown = recipe.get(section, {}).get(name, default)
            if shown != default:  # the method's recipe: its own paper's value, not the generic option's
                label, paper = f"default with --method {method}", None
            else:
                label = "default"
            group.add_argument(f"--{section}.{name.replace('_', '-')}", dest=f"{section}.{name}", type=_value,
                               action=Given, default=argparse.SUPPRESS, metavar="V",
                               nargs="+" if name in listed else None, help=_help(text, shown, paper, label))


def method_defaults(method: str | None) -> dict[str, Any]:
    """The configuration `--method METHOD` alone gives, by section ({} without a method or for an unknown one,
    which the parser then refuses)."""
    if method not in METHODS:
        return {}
    cfg = build_config({"method": method}).to_dict()
    return {k: v for k, v in cfg.items() if isinstance(v, dict)}


def asked_method(argv: list[str]) -> str | None:
    """The value of --method in `argv` (--method X or --method=X), read before parsing so that --help can show
    that method's defaults."""
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
    return None


def list_options(cls: type) -> set[str]:
    """The options of a dataclass that hold a tuple or list: their flags take one or more values, as the eval
    commands' list flags do (`--views.global-scale 0.5 1`), or one YAML list (`[0.5, 1]`)."""
    return {f.name for f in dataclasses.fields(cls) if str(f.type).startswith(("tuple", "list", "Tuple", "List"))}


def add_pretrain_options(p: argparse.ArgumentParser, shortcuts: dict[str, tuple[str, str]] = SHORTCUTS,
                         method: bool = True, asked: str | None = None) -> None:
    p.add_argument("--config", help="YAML recipe; command-line options override it (see src/selfsup/configs/)")
    if method:
        p.add_argument("--method", default=argparse.SUPPRESS, choices=sorted(METHODS), help="pre-training method")
    for flag, (section, name) in shortcuts.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=f"{section}.{name}", type=_value, action=Given,
                       default=argparse.SUPPRESS, metavar="V", help=f"same as --{section}.{name.replace('_', '-')}")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--print-config", action="store_true", help="print the configuration the run would use, each "
                   "value with its source (flag, file, sized, the method's recipe, default), and exit")
    add_config_options(p, asked)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Nested overrides from the dotted option names that were given."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key == "method":
            out["method"] = value
        elif "." in key:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out


def flag_name(args: argparse.Namespace) -> Callable[[str], str]:
    """'optim.lr' -> the flag that set it as the user wrote it ('--lr' or '--optim.lr')."""
    flags = getattr(args, "flags", {})
    return lambda path: flags.get(path) or "--" + path.replace("_", "-")


def user_values(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values set for `selfsup pretrain | demo`, nested: `base` < --config YAML < flags (no defaults). The
    flags are checked here, so that an error names the flag as written; build_config checks the rest."""
    raw = base or {}
    if getattr(args, "config", None):
        raw = merge(raw, load_yaml(args.config))
    overrides = overrides_from(args)
    optim = overrides.get("optim", {})
    if "epochs" in optim and "minutes" not in optim:  # an explicit epoch count replaces a recipe's budget
        optim["minutes"] = None
    method = overrides.get("method", raw.get("method", "dino"))
    stray = [k for k in overrides if k in METHODS and k != method]
    if stray:
        raise ConfigError(f"--{stray[0]}.* options were given but the method is {method}: drop them or "
                          f"pass --method {stray[0]}")
    return merge(raw, check_sections(overrides, option_classes(), flag_name(args)))


def resolve_config(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """The configuration of `selfsup pretrain | demo`: defaults < `base` < --config YAML < flags; build_config
    names the file and key of a bad value."""
    return build_config(user_values(args, base), where=args.config or "command line")


def resume_base(args: argparse.Namespace) -> dict[str, Any] | None:
    """For --resume, the run's own config.yaml (so that nothing is chosen anew); else None."""
    if not args.resume:
        return None
    out = Path(user_values(args).get("run", {}).get("out", RunConfig.out)) / "config.yaml"
    return load_yaml(out) if out.is_file() else None


def sized_config(args: argparse.Namespace, echo: bool = True):
    """`selfsup pretrain`'s configuration: the values left open sized to the data and the machine (see
    selfsup.sizing), the lines saying what was chosen printed (to stderr without `echo`). A --resume takes the
    run's own config.yaml as its base."""
    from selfsup.sizing import sized_config as size

    cfg, lines = size(user_values(args, resume_base(args)), where=args.config or "command line")
    for line in lines:
        print(line, file=sys.stderr if line.startswith("notice:") or not echo else sys.stdout)
    return cfg


def print_config(args: argparse.Namespace, final: Any, base: dict[str, Any] | None = None,
                 base_name: str = "") -> None:
    """--print-config: `final`'s values as YAML, each with its source."""
    from selfsup.print_config import render, value_sources

    saved = resume_base(args)
    files = [(load_yaml(args.config), f"file {args.config}")] if getattr(args, "config", None) else []
    files += [(saved, "the run's config.yaml")] if saved else []
    files += [(base, base_name)] if base and base_name else []
    unsized = build_config(user_values(args, merge(base or {}, saved or {})))
    flags = check_sections({k: v for k, v in overrides_from(args).items() if k != "method"}, option_classes(),
                           flag_name(args))
    if "method" in vars(args):
        flags["method"] = args.method
    print(render(value_sources(final, unsized, flags, flag_name(args), files)))


def report_run(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The lines a pre-training command prints after its run; its JSON summary."""
    if summary is None:
        return None
    if summary["interrupted"]:
        print(f"stopped at step {summary['steps']}/{summary['total_steps']}; continue with the same command and "
              "--resume", file=sys.stderr)
    knn = summary.pop("knn", None)
    if knn:
        print(f"k-NN top-1 on the test split: {knn['top1']:.2f}% (k={knn['k']}, T={knn['temperature']})")
    return summary


def cmd_pretrain(args: argparse.Namespace) -> dict[str, Any] | None:
    from selfsup.api import pretrain

    if args.print_config:
        return print_config(args, sized_config(args, echo=False))
    return report_run(pretrain(sized_config(args), resume=args.resume, progress=not args.no_progress))


def add_distill_parser(sub: argparse._SubParsersAction) -> None:
    dis = sub.add_parser("distill", help="train a student backbone (any --backbone flags: a narrower ViT, a small "
                         "ResNet) to reproduce a frozen teacher's features on unlabeled images; the output is a run "
                         "directory like pretrain's")
    dis.add_argument("--teacher", dest="distill.teacher", type=str, action=Given, required=True, metavar="RUN|FILE",
                     help="the frozen teacher: a run directory, a backbone.safetensors or an official checkpoint "
                     "(its own input size, channels and normalisation are used)")
    dis.add_argument("--teacher-from", dest="distill.teacher_from", type=str, action=Given,
                     default=argparse.SUPPRESS, metavar="SOURCE", help="layout of an official teacher checkpoint, "
                     "as convert --from (default: guessed)")
    add_pretrain_options(dis, method=False, asked="distill")


def cmd_distill(args: argparse.Namespace) -> dict[str, Any] | None:
    from selfsup.api import distill

    cfg = resolve_config(args, base={"method": "distill"})
    if args.print_config:
        return print_config(args, cfg, base={"method": "distill"})
    return report_run(distill(config=cfg, resume=args.resume, progress=not args.no_progress))


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.demo import run_demo

    cfg = resolve_config(args, base=recipe("demo"))
    if args.print_config:
        return print_config(args, cfg, base=recipe("demo"), base_name="the demo recipe (configs/demo.yaml)")
    return run_demo(cfg, progress=not args.no_progress)


def add_attention_parser(sub: argparse._SubParsersAction) -> None:
    att = sub.add_parser("attention", help="save each head's [CLS] attention of a ViT run on image files as a PNG "
                         "grid (maps, means, mass-threshold masks) and .npy arrays")
    att.add_argument("--checkpoint", required=True, metavar="RUN", help="ViT run directory (or its "
                     "backbone.safetensors)")
    att.add_argument("--image", nargs="+", required=True, metavar="PATH", help="image files of any size (cut to "
                     "whole patches for a patch stem, taken as they are by the convolutional stem), turned upright by "
                     "their EXIF orientation, grayscale or RGB converted to the backbone's channels")
    att.add_argument("--out", type=Path, required=True, help="folder for NAME.png and NAME.npy (heads, h, w)")
    att.add_argument("--threshold", type=float, default=0.6, help="share of each head's attention mass its mask "
                     "keeps (DINO: 0.6); lower it for tighter masks around the most attended patches")
    att.add_argument("--rollout", action="store_true", help="also attention rollout through all blocks (mean "
                     "of heads plus identity, multiplied through the layers): shows what the CLS token gathers "
                     "over the whole network, where the last block alone shows only its final step")
    att.add_argument("--size", type=int, help="resize each image's shorter side to this many pixels first "
                     "(default: as the file is). DINO's figures use 480 px with 8-px patches; the cost grows "
                     "with the square of the number of patches")
    att.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def cmd_attention(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.insight.visualize import visualize

    entries = visualize(args.checkpoint, args.image, args.out, args.threshold, args.rollout, args.size)
    for e in entries:
        print(f"{e['image']}: {e['heads']} heads on a {e['grid'][0]}x{e['grid'][1]} patch grid -> {e['png']}")
    return {"images": entries}


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    srv = sub.add_parser("serve", help="a web page (Streamlit) to explore the runs under a folder: attention of "
                         "each head on example or uploaded images, and the nearest training images")
    srv.add_argument("--runs", default="runs", help="folder whose run directories the page offers. The page "
                     "reads files under it only (symlinks out are not followed): each run's backbone.safetensors, "
                     "config.yaml and reconstructions.png, and, for the nearest-images button, a run's training data "
                     "when it lies under --runs or --data-root or is a named dataset (a sample of at most 2000 "
                     "images); plus the images visitors upload")
    srv.add_argument("--data-root", metavar="DIR", help="also let the nearest-images button read training data "
                     "under DIR (a run's config.yaml names its data; by default only data under --runs is read)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the page to your "
                     "network, so only do that on a trusted one")
    srv.add_argument("--port", type=int, default=8501, help="port to listen on")
    srv.add_argument("--max-upload-mb", type=float, default=5.0, help="largest image file a visitor may upload")
    srv.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def cmd_serve(args: argparse.Namespace) -> None:
    from selfsup.web.serve import serve

    serve(args.runs, args.host, args.port, args.max_upload_mb, args.data_root)


def add_ablate_parser(sub: argparse._SubParsersAction) -> None:
    abl = sub.add_parser("ablate", help="reproduce the seeds' ablation tables at small scale: run each recipe's "
                         "variants (k-NN and linear probe, time, peak memory) and write OUT/reproduction.md with "
                         "plots; a finished variant is not rerun")
    abl.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe YAML file(s), or the name of a shipped "
                     "one in src/selfsup/configs/ablations/ (e.g. dino-components)")
    abl.add_argument("--out", type=Path, default=Path("runs/ablate"), help="folder of the runs, results, report "
                     "and plots; rerun with the same --out to resume")
    abl.add_argument("--minutes", type=float, help="wall-clock budget per variant instead of the recipe's (the "
                     "same for every variant); results made with another budget are refused, not mixed")
    abl.add_argument("--no-progress", action="store_true", help="no progress bars")
    abl.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def cmd_ablate(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.ablate import ablate

    summary = ablate(args.recipes, args.out, args.minutes, progress=not args.no_progress)
    for row in summary["variants"]:
        holds = {None: "-", True: "yes", False: "no"}[row["holds"]]
        print(f"{row['recipe']} / {row['variant']}: k-NN {row['knn_top1']}, linear {row['linear_top1']}, "
              f"direction holds: {holds}")
    print(f"report: {summary['report']}")
    return summary


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; `argv`, if given, is read for --method so that help shows that method's defaults."""
    asked = asked_method(argv or [])
    p = Parser(prog="selfsup", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="pre-train the demo recipe (configs/demo.yaml) on Fashion-MNIST (digits if "
                          "absent) for its time budget and compare k-NN of learned features, random init and "
                          "raw pixels",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_pretrain_options(demo)
    pre = sub.add_parser("pretrain", help="pre-train a backbone without labels")
    add_pretrain_options(pre, asked=asked)
    add_distill_parser(sub)
    commands.add_eval_parser(sub)
    commands.add_knn_parser(sub)
    commands.add_report_parser(sub)
    commands.add_embed_parser(sub)
    add_attention_parser(sub)
    add_serve_parser(sub)
    add_ablate_parser(sub)
    weights.add_convert_parser(sub)
    weights.add_export_parser(sub)
    return p


COMMANDS = {"demo": cmd_demo, "pretrain": cmd_pretrain, "distill": cmd_distill, "eval": commands.cmd_eval,
            "knn": commands.cmd_knn, "report": commands.cmd_report, "embed": commands.cmd_embed,
            "attention": cmd_attention, "serve": cmd_serve, "ablate": cmd_ablate, "convert": weights.cmd_convert,
            "export": weights.cmd_export}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    from selfsup.errors import USER_ERRORS

    try:
        summary = COMMANDS[args.command](args)
    except USER_ERRORS as e:
        print(f"selfsup {args.command}: error: {e}", file=sys.stderr)
        return 2
    if args.json and summary is not None:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
