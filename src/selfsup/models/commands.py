"""The weight commands of the CLI: `selfsup convert FILE` (official ViT weights -> a run directory) and
`selfsup export` (a run's backbone -> ONNX or safetensors). `selfsup.cli` registers them; each returns the JSON
summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from selfsup.models.convert import OFFICIAL_PRESETS
from selfsup.models.export import FORMATS, OPSET, TOLERANCE
from selfsup.models.sources import DEFAULTS, SOURCES
from selfsup.models.vit import POOLS, POS_INTERPS


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser("convert", help="turn an official DINO, DINOv2, MAE, MoCo v3 or timm ViT checkpoint into a "
                          "run directory that selfsup knn, eval, attention, serve and export accept",
                          description="Reads the file without running code from it (tensors, plain containers and "
                          "argparse.Namespace only), keeps the backbone (DINO, DINOv2: the teacher), reads its "
                          "architecture off the tensors (width, depth, patch size, registers, LayerScale, SwiGLU), "
                          "takes what they do not store (heads, input mean/std, position resizing, feature) from "
                          "the source's own code unless given, and writes OUT/backbone.safetensors and "
                          "OUT/config.yaml. Nothing is downloaded: pass a file you have.")
    conv.add_argument("file", type=Path, metavar="FILE", help="the checkpoint: .pth, .pth.tar or .safetensors")
    conv.add_argument("--from", dest="source", required=True, choices=SOURCES, help="whose layout FILE has: dino "
                      "(a release backbone or a training checkpoint with teacher/student), dinov2 (a release "
                      "dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth or a training run's teacher_checkpoint.pth), mae "
                      "({'model': ...}; pre-trained, or fine-tuned with --cls_token), moco-v3 (main_moco.py's, "
                      "convert_to_deit.py's or main_lincls.py's file) or timm (a ViT state_dict; its classifier "
                      "head is dropped)")
    conv.add_argument("--backbone", choices=OFFICIAL_PRESETS, help="the ViT size, checked against the tensors "
                      "(default: read off them); a wrong one is named with the one the file holds")
    conv.add_argument("--patch-size", type=int, help="patch side in pixels, checked against the patch embedding "
                      "(default: read off it); DINO releases 16 and 8, DINOv2 14")
    conv.add_argument("--width", type=int, help="ViT width when not the preset's (e.g. 1280 with --depth 32 "
                      "--num-heads 16 for MAE's ViT-H)")
    conv.add_argument("--depth", type=int, help="ViT blocks when not the preset's")
    conv.add_argument("--num-heads", type=int, help="attention heads; they are not stored in the weights (default: "
                      "the official model's: MoCo v3's ViT-S has 12, DINO's and DINOv2's 6; ViT-L and ViT-H 16, "
                      "DINOv2's ViT-g 24)")
    conv.add_argument("--pos-interp", choices=POS_INTERPS, help="how position embeddings are resized for other "
                      "image sizes: dino (bicubic by the scale factor (h + 0.1) / side, as DINO's and DINOv2's "
                      "original models do), size (bicubic to the grid, as MAE's fine-tuning does) or size-antialias "
                      "(bicubic to the grid, antialiased when shrinking, as DINOv2's register models and timm do) "
                      "(default: dino for dino and dinov2, size-antialias for dinov2 with registers and timm, size "
                      "for mae and moco-v3)")
    conv.add_argument("--mean", type=float, nargs="+", metavar="M", help="input mean per channel, in [0, 1] units "
                      "(default: the source's: ImageNet's 0.485 0.456 0.406, but 0.5 0.5 0.5 for timm, whose "
                      ".dino, .mae and _dinov2 entries use ImageNet's)")
    conv.add_argument("--std", type=float, nargs="+", metavar="S", help="input std per channel (default: the "
                      "source's: ImageNet's 0.229 0.224 0.225, but 0.5 0.5 0.5 for timm)")
    conv.add_argument("--pool", choices=POOLS, help="the feature the backbone outputs (default: what the source's "
                      "linear evaluation reads: DINO ViT-S cls-last4, DINO ViT-B and DINOv2 cls+mean, MAE, MoCo v3 "
                      "and timm cls)")
    conv.add_argument("--student", action="store_true", help="DINO training checkpoints: take the student instead "
                      "of the teacher (DINO evaluates the teacher, which is usually the better one)")
    conv.add_argument("--data", help="dataset the eval commands and serve's nearest images use when not given "
                      "--data (written to OUT/config.yaml); the official weights were trained on ImageNet, which "
                      "selfsup reads only as an image folder you pass")
    conv.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory to write (must not "
                      "hold a backbone already)")
    conv.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def cmd_convert(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.models.convert import convert_checkpoint, write_run

    converted = convert_checkpoint(args.file, args.source, args.backbone, args.patch_size, args.width, args.depth,
                                   args.num_heads, args.pos_interp, args.student, args.mean, args.std, args.pool)
    path = write_run(converted, args.file, args.out, args.data)
    spec, model = converted.spec, converted.model
    params = sum(p.numel() for p in model.parameters())
    extras = [f"{spec.registers} registers"] * bool(spec.registers) + ["LayerScale"] * bool(spec.layerscale) \
        + ["SwiGLU"] * (spec.ffn == "swiglu")
    print(f"{args.source} {converted.part} of {args.file}: {spec.name}/{spec.patch_size} (width {model.embed_dim}, "
          f"depth {len(model.blocks)}, {model.num_heads} heads{''.join(', ' + e for e in extras)}), {spec.img_size}-px "
          f"images, {params / 1e6:.1f}M parameters -> {path}"
          + (f"; left out: {', '.join(converted.dropped)}" if converted.dropped else ""))
    defaults = f" ({args.source}'s defaults: {', '.join(converted.defaults)})" if converted.defaults else ""
    print(f"feature {spec.pool}, input mean {_values(spec.mean)} std {_values(spec.std)}, position embeddings "
          f"resized the {spec.pos_interp} way{defaults}")
    if {"--mean", "--std"} & set(converted.defaults) and DEFAULTS[args.source].note:
        print(f"note: {DEFAULTS[args.source].note}")
    return {"out": str(args.out), "backbone": spec.name, "patch_size": spec.patch_size, "width": model.embed_dim,
            "depth": len(model.blocks), "num_heads": model.num_heads, "img_size": spec.img_size,
            "registers": spec.registers, "layerscale": spec.layerscale is not None, "ffn": spec.ffn,
            "pos_interp": spec.pos_interp, "pool": spec.pool, "mean": spec.mean, "std": spec.std,
            "from": args.source, "part": converted.part, "params": params, "dropped": converted.dropped,
            "defaults": converted.defaults}


def _values(values: list[float]) -> str:
    return " ".join(f"{v:g}" for v in values)


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="write a run's backbone as ONNX (checked against onnxruntime) or as a "
                         "safetensors file with its spec",
                         description="ONNX: input 'images' (B, C, H, W) float32, normalised with the run's mean and "
                         "std; output 'features' (B, feature_dim); batch, H and W dynamic (multiples of the patch "
                         "size). The file is written only when onnxruntime agrees with torch at two image sizes.")
    exp.add_argument("--checkpoint", required=True, metavar="RUN", help="run directory (pretrain, convert, "
                     "fine-tuning) or its backbone.safetensors")
    exp.add_argument("--format", dest="fmt", choices=FORMATS, default="onnx", help="onnx (for onnxruntime, "
                     "TensorRT, ...; needs pip install 'selfsup[onnx]') or safetensors (the backbone file with its "
                     "spec, for selfsup.load_backbone)")
    exp.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write (e.g. vit.onnx)")
    exp.add_argument("--opset", type=int, default=OPSET, help="ONNX opset, 17 or more; lower it only for an old "
                     "runtime")
    exp.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest |onnxruntime - torch| allowed, "
                     "relative to the largest output (at least 1)")
    exp.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from selfsup.models.export import export_backbone

    summary = export_backbone(args.checkpoint, args.fmt, args.out, args.opset, args.tolerance)
    if args.fmt == "onnx":
        sizes = " and ".join(f"{h}x{w}" for h, w in summary["checked_sizes"])
        print(f"onnxruntime vs torch at {sizes}: max abs diff {summary['max_abs_diff']:.2e} (allowed "
              f"{summary['tolerance']:.2e})")
    print(f"{summary['backbone']} of {args.checkpoint} -> {args.out} ({args.fmt})")
    return summary


__all__ = ["add_convert_parser", "add_export_parser", "cmd_convert", "cmd_export"]
