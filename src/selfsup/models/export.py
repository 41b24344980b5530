"""`selfsup export`: a run's backbone as ONNX, checked against onnxruntime, or as a backbone.safetensors file.

The ONNX graph maps normalised images "images" (B, C, H, W) float32 to "features" (B, feature_dim), with the
batch, H and W dynamic (H and W multiples of a ViT's patch size). A ViT's position embeddings are resized in the
graph by explicit bicubic weight matrices (`bicubic_matrix`, `antialiased_bicubic_matrix`) instead of torch's
shape-dependent branches, which the exporter would freeze at the example's size; the check after export compares
onnxruntime with torch at two image sizes, the backbone's own and a non-square one taller and narrower.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from selfsup.models.io import BackboneFileError, BackboneSpec, load_backbone, save_backbone
from selfsup.models.vit import VisionTransformer

FORMATS = ("onnx", "safetensors")
OPSET = 18
TOLERANCE = 1e-4  # max |onnxruntime - torch| allowed, relative to the largest |torch| output (at least 1)
BACKBONE_FILE = "backbone.safetensors"
CUBIC_A = -0.75  # PyTorch's bicubic coefficient (upsample_bicubic2d), as ONNX Resize's default


class ExportError(BackboneFileError):
    """An export that cannot run or whose file disagrees with torch; the message names the file and the fix."""


def load_run_backbone(checkpoint: str | Path) -> tuple[nn.Module, BackboneSpec]:
    """The backbone (eval mode) of a run directory or a backbone.safetensors file."""
    path = Path(checkpoint)
    model, spec = load_backbone(path / BACKBONE_FILE if path.is_dir() else path)
    return model.eval(), spec


# ---- position embeddings the exporter keeps dynamic -------------------------------------------------------------


def cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """(n,) offsets in [0, 1) -> (n, 4) weights of the taps at -1, 0, +1, +2 (Keys' cubic convolution, A=-0.75)."""
    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def bicubic_matrix(dst: torch.Tensor, n_in: int, step: torch.Tensor) -> torch.Tensor:
    """(n_out,) output indices as floats -> (n_out, n_in) weights of torch's bicubic resampling (align_corners
    False, taps clamped at the edges) that samples input coordinate (i + 0.5) * step - 0.5 for output i."""
    src = (dst + 0.5) * step - 0.5  # (n_out,)
    first = src.floor()
    taps = (first.unsqueeze(1) + torch.arange(-1, 3, dtype=dst.dtype, device=dst.device)).clamp(0, n_in - 1)
    onehot = taps.unsqueeze(-1) == torch.arange(n_in, dtype=dst.dtype, device=dst.device)  # (n_out, 4, n_in)
    return (cubic_weights(src - first).unsqueeze(-1) * onehot.to(dst.dtype)).sum(1)


def cubic_kernel(x: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with coefficient `a` at offsets x (any shape); 0 where |x| >= 2."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def antialiased_bicubic_matrix(dst: torch.Tensor, n_in: int, step: torch.Tensor) -> torch.Tensor:
    """(n_out,) output indices as floats -> (n_out, n_in) weights of torch's antialiased bicubic resampling
    (`F.interpolate(..., antialias=True)`: aten's upsample_bicubic2d_aa, `_compute_weights_aa`, as PIL): output i
    is centred on input coordinate (i + 0.5) * step; when shrinking (step > 1) the kernel is widened by step, so
    every input cell within 2 * step contributes; the coefficient is -0.5 (PIL's, not the -0.75 of plain bicubic);
    taps past the edges are left out and each row renormalised, instead of clamped."""
    center = (dst + 0.5) * step  # (n_out,)
    src = torch.arange(n_in, dtype=dst.dtype, device=dst.device) + 0.5  # (n_in,) input cell centres
    weights = cubic_kernel((src - center.unsqueeze(1)) / step.clamp(min=1.0), -0.5)  # (n_out, n_in)
    return weights / weights.sum(1, keepdim=True)


def traceable_pos_encoding(vit: VisionTransformer, h: int, w: int) -> torch.Tensor:
    """`VisionTransformer.interpolate_pos_encoding` without Python branches on h and w: (1, 1 + h*w, D).

    At the stored grid, "size" and "size-antialias" resizing are the identity and DINO's keeps the stored
    embeddings (a flag computed in the graph); elsewhere all are bicubic, with a step of side/h ("size",
    "size-antialias": antialiased, `antialiased_bicubic_matrix`) or side/(h + 0.1) ("dino")."""
    side = math.isqrt(vit.pos_embed.shape[1] - 1)
    rows = torch.arange(h, dtype=vit.pos_embed.dtype, device=vit.pos_embed.device)  # (h,)
    cols = torch.arange(w, dtype=vit.pos_embed.dtype, device=vit.pos_embed.device)  # (w,)
    n_h, n_w = rows[-1:] + 1, cols[-1:] + 1  # (1,) each: the grid's sides as tensors, so they stay dynamic
    if vit.pos_interp == "dino":
        native = (n_h == side) & (n_w == side)
        step_h = torch.where(native, 1.0, side / (n_h + 0.1))
        step_w = torch.where(native, 1.0, side / (n_w + 0.1))
    else:
        step_h, step_w = side / n_h, side / n_w
    grid = vit.pos_embed[0, 1:].reshape(side, side, -1).permute(2, 0, 1)  # (D, side, side)
    resample = antialiased_bicubic_matrix if vit.pos_interp == "size-antialias" else bicubic_matrix
    out = resample(rows, side, step_h) @ grid @ resample(cols, side, step_w).T  # (D, h, w)
    return torch.cat([vit.pos_embed[:, :1], out.flatten(1).T.unsqueeze(0)], dim=1)


def exportable(model: nn.Module) -> nn.Module:
    """A copy of the backbone for the exporter (eval mode): a ViT's copy resizes its position embeddings with
    `traceable_pos_encoding`; other backbones are copied as they are."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, VisionTransformer):
        model.interpolate_pos_encoding = types.MethodType(traceable_pos_encoding, model)
    return model


# ---- ONNX ------------------------------------------------------------------------------------------------------


def check_sizes(spec: BackboneSpec) -> list[tuple[int, int]]:
    """The backbone's own square size and a non-square one, taller by two patches and narrower by one (when it is
    wider than a patch), both multiples of the patch size: position embeddings are resized up and down."""
    step = spec.patch_size or 16
    return [(spec.img_size, spec.img_size), (spec.img_size + 2 * step, max(step, spec.img_size - step))]


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"--format onnx needs the packages onnx, onnxscript and onnxruntime ({e}): "
                          "pip install 'selfsup[onnx]' (or --format safetensors)") from None


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, log records and warnings kept off the console."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def write_onnx(model: nn.Module, spec: BackboneSpec, out: Path, opset: int = OPSET) -> None:
    """Export the backbone to `out`: dynamic batch, height and width, traced at a non-square example size."""
    _require_onnx()
    h, w = check_sizes(spec)[1]
    example = torch.zeros(2, spec.in_chans, h, w)  # (B, C, H, W)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30  # protobuf's 2 GB limit
    try:
        with _quiet():
            torch.onnx.export(exportable(model), (example,), str(out), dynamo=True, dynamic_shapes=(dims,),
                              opset_version=opset, input_names=["images"], output_names=["features"],
                              external_data=large)
    except Exception as e:
        raise ExportError(f"torch.onnx.export could not export {spec.name} to {out} "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}): "
                          "try another --opset, or --format safetensors") from e


def compare_onnx(model: nn.Module, path: Path, sizes: list[tuple[int, int]], in_chans: int,
                 batch: int = 2) -> tuple[float, float]:
    """onnxruntime against torch on a seeded random batch at each (H, W): (max |difference|, max |torch output|)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    diff = scale = 0.0
    for h, w in sizes:
        x = torch.randn(batch, in_chans, h, w, generator=gen)  # normalised images
        with torch.no_grad():
            ref = model.eval()(x)  # (B, feature_dim)
        got = torch.from_numpy(session.run(["features"], {"images": x.numpy()})[0])
        if got.shape != ref.shape:
            raise ExportError(f"{path} outputs {tuple(got.shape)} at {h}x{w} where torch gives {tuple(ref.shape)}: "
                              "the export is wrong; please report it")
        diff, scale = max(diff, (got - ref).abs().max().item()), max(scale, ref.abs().max().item())
    return diff, scale


def verify_onnx(model: nn.Module, path: Path, sizes: list[tuple[int, int]], in_chans: int,
                tolerance: float = TOLERANCE, name: Path | None = None) -> tuple[float, float]:
    """`compare_onnx`, failing with ExportError (naming `name`, default `path`) when the difference is above
    `tolerance` times the largest output (at least 1). Returns (max |difference|, the difference allowed)."""
    diff, scale = compare_onnx(model, path, sizes, in_chans)
    allowed = tolerance * max(1.0, scale)
    if not diff <= allowed:
        raise ExportError(f"{name or path}: onnxruntime differs from torch by {diff:.3g} (allowed {allowed:.3g}) at "
                          f"{', '.join(f'{h}x{w}' for h, w in sizes)}; nothing was written: try another --opset, or "
                          "--format safetensors")
    return diff, allowed


def export_onnx(model: nn.Module, spec: BackboneSpec, out: Path, opset: int = OPSET,
                tolerance: float = TOLERANCE) -> dict:
    """Write `out` only once onnxruntime agrees with torch at both `check_sizes` (see `verify_onnx`). Returns the
    summary of the check."""
    if opset < 17:
        raise ExportError(f"--opset {opset} is too old: the graph needs LayerNormalization (opset 17); pass 17 or "
                          "more")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sizes = check_sizes(spec)
    try:
        write_onnx(model, spec, tmp, opset)
        diff, allowed = verify_onnx(model, tmp, sizes, spec.in_chans, tolerance, name=out)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"out": str(out), "format": "onnx", "opset": opset, "checked_sizes": [list(s) for s in sizes],
            "max_abs_diff": diff, "tolerance": allowed}


def export_backbone(checkpoint: str | Path, fmt: str, out: str | Path, opset: int = OPSET,
                    tolerance: float = TOLERANCE) -> dict:
    """`selfsup export`: the backbone of `checkpoint` (run directory or backbone.safetensors) written to `out` as
    ONNX (checked with onnxruntime) or as a backbone.safetensors with its spec. Returns the summary."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is unknown: choose one of {', '.join(FORMATS)}")
    model, spec = load_run_backbone(checkpoint)
    out = Path(out)
    if fmt == "safetensors":
        save_backbone(model, spec, out)
        return {"out": str(out), "format": "safetensors", "backbone": spec.name}
    return {**export_onnx(model, spec, out, opset, tolerance), "backbone": spec.name,
            "feature_dim": getattr(model, "feature_dim", getattr(model, "embed_dim", None))}


__all__ = ["FORMATS", "ExportError", "antialiased_bicubic_matrix", "bicubic_matrix", "check_sizes", "compare_onnx",
           "export_backbone", "export_onnx", "exportable", "load_run_backbone", "traceable_pos_encoding",
           "verify_onnx", "write_onnx"]
