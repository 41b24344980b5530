"""Choose a recipe for continuing pre-training from existing weights (`selfsup pretrain --init`) on a validation
split: the training images' held-out share (--data.holdout), never the test split.

What the official repositories' users report (dino issues 1, 85, 184, 207; dinov2 issues 204, 243, 507): restarting
DINO from released weights with the from-scratch recipe destroys the features within a few thousand images,
because the heads start random (the releases carry no heads) and the first updates through them undo the
backbone; the advice is to train the fresh heads first with the backbone frozen (LightlyTrain's
student_freeze_backbone_epochs), a lower learning rate, and a teacher momentum close to 1. DINOv2 trains the patch
embedding at 0.2x the learning rate (ssl_default_config.yaml patch_embed_lr_mult); MoCo v3 freezes it.

The screen changes one factor at a time from a base recipe and reports each variant's k-NN on the validation
split, beside the source's own (the backbone frozen throughout):
    learning rate (x the method's from-scratch recipe), warm-up epochs, teacher momentum (methods with a momentum
    teacher), frozen patch embedding, epochs with the backbone frozen at the start.

    .venv/bin/python benchmarks/continue_screen.py --init runs/demo --method dino --minutes 3
    .venv/bin/python benchmarks/continue_screen.py --init runs/demo --recipe demo --method simclr --minutes 4
    .venv/bin/python benchmarks/continue_screen.py --smoke --init FILE --out DIR --doc FILE   # seconds

Finished variants are reused (OUT/NAME/summary.json); docs/continue_screen.md and .json are written each time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import selfsup
from selfsup.config import build_config, load_yaml, recipe
from selfsup.machine import machine_words

ROOT = Path(__file__).resolve().parents[1]
MOMENTUM = {"dino": "momentum_teacher", "byol": "momentum", "moco-v3": "momentum"}  # the teacher's EMA option


def base(method: str, start: dict[str, Any], lr_scale: float) -> dict[str, Any]:
    """The base continuing recipe: the from-scratch lr (of `start`, the recipe continued, with `method`) x
    `lr_scale`, 0.3 warm-up epochs, the backbone frozen for the first 0.2 epochs while the fresh heads learn (runs
    of minutes last a few epochs: the 1 epoch of LightlyTrain's runs of hours would be half of one), the teacher's
    momentum at 0.9995 (where it has one)."""
    lr = build_config(merge(start, {"method": method})).optim.lr
    recipe: dict[str, Any] = {"optim": {"lr": lr * lr_scale, "warmup_epochs": 0.3, "freeze_backbone_epochs": 0.2,
                                        "freeze_patch_embed": False}}
    if method in MOMENTUM:
        recipe[method] = {MOMENTUM[method]: 0.9995}
    return recipe


def variants(method: str, start: dict[str, Any], smoke: bool = False) -> dict[str, dict[str, Any]]:
    """Name -> option overrides of the base; one factor changed per variant."""
    lr = base(method, start, 0.1)["optim"]["lr"]
    frozen = {"freeze_backbone_epochs": 1e6, **({} if smoke else {"minutes": 0.1})}  # its k-NN is the source's
    out = {"source (backbone frozen)": {"optim": frozen},
           "base: lr x0.1, warm-up 0.3, heads first 0.2 epoch": {},
           "lr x1 (from scratch)": {"optim": {"lr": lr * 10}},
           "lr x0.3": {"optim": {"lr": lr * 3}},
           "backbone never frozen": {"optim": {"freeze_backbone_epochs": 0.0}},
           "patch embedding frozen": {"optim": {"freeze_patch_embed": True}}}
    if method in MOMENTUM:
        out["teacher momentum 0.996 (from scratch)"] = {method: {MOMENTUM[method]: 0.996}}
    return dict(list(out.items())[:2]) if smoke else out


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                    for k, v in b.items()}}


def run(name: str, sections: dict[str, Any], out: Path) -> dict[str, Any]:
    done = out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    resume = (out / "checkpoints" / "last.pt").exists()
    summary = selfsup.pretrain(**{**sections, "run": {**sections.get("run", {}), "out": str(out)}}, resume=resume,
                               sized=False)  # the variants' values exactly
    summary["variant"] = name
    done.write_text(json.dumps(summary))
    return summary


def epochs(r: dict[str, Any]) -> float:
    """Epochs a variant trained: its steps x batch (its config.yaml) over its training images (the k-NN bank)."""
    batch = load_yaml(Path(r["out"]) / "config.yaml")["optim"]["batch_size"]
    return r["steps"] * batch / r["knn"]["n_train"]


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    length = "two steps (smoke)" if args.smoke else f"{args.minutes} minutes each"
    recipe_words = f" with the {args.recipe} recipe's views, backbone options and optimiser" if args.recipe else ""
    lines = [f"# Continuing pre-training from {args.init}: {args.method}{recipe_words} on {args.data}, {length}", "",
             f"Written by benchmarks/continue_screen.py on {dt.date.today().isoformat()}, {machine_words()}. k-NN "
             f"(k=20, T=0.07) on the validation split: {args.holdout:.4g} of the training images held out "
             "(--data.holdout), never the test split.", "",
             "| variant | k-NN top-1 (validation) | steps | epochs | images/s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r.get('knn_top1', float('nan')):.2f} | {r['steps']} | {epochs(r):.2f} | "
                     f"{r['images_per_s']:.0f} |")
    trained = [r for r in rows if not r["variant"].startswith("source")]
    if trained and not args.smoke:
        best = max(trained, key=lambda r: r.get("knn_top1", 0))
        lines += ["", f"Best on validation: {best['variant']} ({best['knn_top1']:.2f}; the source itself "
                  f"{rows[0]['knn_top1']:.2f}). One run each: differences of a tenth or two of a point are within "
                  "what a rerun moves. selfsup/sizing/continuing.py holds the recipe `selfsup pretrain --init` takes "
                  "from this screen."]
    most = max(epochs(r) for r in rows)
    if most < 1:  # the base recipe keeps the backbone frozen for its first epoch
        lines += ["", f"Every variant trained at most {most:.2f} epochs: those that freeze the backbone for the "
                  "first epoch (the base and every variant but 'backbone never frozen') never unfroze it, so this "
                  "budget cannot separate them. Rerun with more --minutes."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="the weights to continue from (as --init)")
    p.add_argument("--init-from", help="their layout, for an official checkpoint (as --init-from)")
    p.add_argument("--method", default="dino")
    p.add_argument("--recipe", default=None, help="a packaged recipe continued with its own views, backbone "
                   "options and optimiser (demo: the demo's SimCLR), the base's changes on top")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--holdout", type=float, default=0.1667, help="share of the training images held out")
    p.add_argument("--minutes", type=float, default=3.0, help="training minutes per variant")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "continue-screen")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "continue_screen.md")
    p.add_argument("--smoke", action="store_true", help="two variants of two steps on digits, for the test")
    p.add_argument("--only", default="", help="variant names separated by ';' (default: all)")
    args = p.parse_args(argv)
    only = [n.strip() for n in args.only.split(";") if n.strip()]
    if args.smoke:
        args.data = "digits"
    length = {"epochs": 2 / 40, "batch_size": 32, "minutes": None} if args.smoke else {"minutes": args.minutes}
    start = {k: v for k, v in recipe(args.recipe).items() if k not in ("run", "data")} if args.recipe else {}
    start.get("optim", {}).pop("minutes", None)
    common = merge(merge(start, base(args.method, start, 0.1)), {
        "method": args.method, "data": {"name": args.data, "holdout": args.holdout},
        "backbone": {"init": args.init, "init_from": args.init_from}, "optim": length,
        "run": {"eval_knn": True, "checkpoint_every": 200}})
    if args.smoke and args.method == "dino":  # a small head: seconds, not minutes
        common["dino"] = {**common.get("dino", {}), "out_dim": 256, "hidden_dim": 64, "bottleneck_dim": 32}
        common["views"] = {"n_local": 0}
    todo = variants(args.method, start, args.smoke)
    rows = [run(name, merge(common, change), args.out / f"v{i}")
            for i, (name, change) in enumerate(todo.items()) if not only or name in only]
    text = table(rows, args)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(text)
    args.doc.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return rows


if __name__ == "__main__":
    main()
