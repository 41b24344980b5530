import json
import sys
from pathlib import Path

import pytest
import torch

import selfsup
from selfsup.cli import main
from selfsup.models import export
from selfsup.models.export import ExportError, compare_onnx, exportable, traceable_pos_encoding, verify_onnx
from selfsup.models.io import BackboneSpec

sys.path.insert(0, str(Path(__file__).parent))
from official_vit import dinov2_reference, dinov2_release, reference, write_layout  # noqa: E402

TINY_FLAGS = ["--backbone", "vit-tiny", "--width", "48", "--depth", "2", "--num-heads", "3"]


def images(h, w, seed=0):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pos_interp", ["size", "dino", "size-antialias"])
def test_traceable_position_embeddings_equal_the_models(pos_interp):
    spec = BackboneSpec("vit-tiny", 64, 3, 8, [0.5] * 3, [0.25] * 3, width=48, depth=1, num_heads=3,
                        pos_interp=pos_interp)
    vit = spec.build()
    with torch.no_grad():
        vit.pos_embed.normal_()
        for h, w in [(8, 8), (12, 12), (10, 14), (5, 3), (1, 1), (30, 9)]:
            assert torch.allclose(traceable_pos_encoding(vit, h, w), vit.interpolate_pos_encoding(h, w), atol=1e-5)
        copy = exportable(vit)
        assert copy is not vit and not copy.training
        assert vit.interpolate_pos_encoding.__func__ is type(vit).interpolate_pos_encoding  # the model is untouched


def test_the_antialiased_matrix_is_torchs_antialiased_bicubic():
    """Shrinking widens the kernel by the scale (every input cell within 2 * scale counts), growing does not; both
    with PIL's coefficient -0.5 and renormalised edges (torch's upsample_bicubic2d_aa)."""
    grid = torch.randn(1, 5, 14, 14, generator=torch.Generator().manual_seed(0))
    for h, w in [(3, 6), (7, 30), (13, 15), (1, 2), (14, 14)]:
        rows = export.antialiased_bicubic_matrix(torch.arange(h).float(), 14, torch.tensor([14 / h]))
        cols = export.antialiased_bicubic_matrix(torch.arange(w).float(), 14, torch.tensor([14 / w]))
        want = torch.nn.functional.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)[0]
        assert torch.allclose(rows @ grid[0] @ cols.T, want, atol=1e-5), (h, w)
    assert (export.antialiased_bicubic_matrix(torch.arange(3).float(), 14, torch.tensor([14 / 3])) > 0).sum(1).min() > 4


def test_a_dinov2_backbone_with_registers_exports_exactly(tmp_path, one_thread):
    """Registers, LayerScale, SwiGLU and antialiased resizing in the graph: onnxruntime gives the official
    DINOv2 model's [CLS] at its own size, at one that shrinks the stored grid and at one that grows it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    ref = dinov2_reference(registers=True, ffn="swiglu")
    torch.save(dinov2_release(ref), tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    assert main(["convert", str(tmp_path / "dinov2_vits14_reg4_pretrain.pth"), "--from", "dinov2", "--backbone",
                 "vit-small", "--depth", "2", "--pool", "cls", "--out", str(tmp_path / "run")]) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "dinov2.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "dinov2.onnx"), providers=["CPUExecutionProvider"])
    for h, w in [(56, 56), (42, 28), (84, 42), (98, 70)]:  # 4x4 stored; 3x2 and 6x3 shrink; 7x5 grows
        x = images(h, w)
        with torch.no_grad():
            expected = ref(x)  # the hub model's forward: the normalised [CLS] token
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert torch.allclose(got, expected, atol=1e-4), (h, w)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The official reference converted (DINO interpolation) and exported by the CLI: (reference, run, onnx,
    the command's JSON summary, its printed lines)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    tmp = tmp_path_factory.mktemp("export")
    ref = reference(3)
    path = write_layout("dino-release", ref, ref, tmp / "dino.pth")
    assert main(["convert", str(path), "--from", "dino", *TINY_FLAGS, "--pool", "cls", "--out", str(tmp / "run")]) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["export", "--checkpoint", str(tmp / "run"), "--out", str(tmp / "vit.onnx"), "--json"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    lines = buf.getvalue().strip().splitlines()
    return ref, tmp / "run", tmp / "vit.onnx", json.loads(lines[-1]), lines


def test_export_checks_onnxruntime_against_torch_at_two_sizes(exported):
    _, _, onnx_file, summary, lines = exported
    assert onnx_file.is_file() and not onnx_file.with_name("vit.onnx.tmp").exists()
    assert summary["format"] == "onnx" and summary["opset"] >= 17
    assert summary["checked_sizes"] == [[64, 64], [80, 56]]
    assert summary["max_abs_diff"] <= summary["tolerance"] and summary["tolerance"] >= 1e-4
    assert lines[0].startswith("onnxruntime vs torch at 64x64 and 80x56: max abs diff")


def test_the_onnx_file_computes_the_official_network_at_any_size(exported, one_thread):
    import onnx
    import onnxruntime as ort

    ref, _, onnx_file, _, _ = exported
    graph = onnx.load(str(onnx_file)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "images" and graph.output[0].name == "features"
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # batch, H, W dynamic
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for b, h, w in [(1, 64, 64), (3, 48, 104), (2, 128, 128)]:
        x = torch.randn(b, 3, h, w)
        with torch.no_grad():
            expected = ref(x)
        assert torch.allclose(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), expected, atol=1e-4)


def test_the_check_fails_when_the_file_disagrees(exported):
    _, _, onnx_file, _, _ = exported
    other = selfsup.load_backbone(exported[1])
    with torch.no_grad():
        other.norm.bias.add_(0.01)
    diff, scale = compare_onnx(other, onnx_file, [(64, 64)], 3)
    assert diff == pytest.approx(0.01, abs=1e-4) and scale > 0
    with pytest.raises(ExportError, match="vit.onnx: onnxruntime differs from torch by 0.01"):
        verify_onnx(other, onnx_file, [(64, 64)], 3, tolerance=1e-4)
    assert verify_onnx(other, onnx_file, [(64, 64)], 3, tolerance=0.1)[0] == pytest.approx(0.01, abs=1e-4)


def test_export_safetensors_and_errors(exported, tmp_path, capsys):
    ref, run, _, _, _ = exported
    out = tmp_path / "vit.safetensors"
    assert main(["export", "--checkpoint", str(run), "--format", "safetensors", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["format"] == "safetensors"
    model, spec = selfsup.load_backbone(out, return_spec=True)
    assert spec.pos_interp == "dino" and spec.num_heads == 3
    with torch.no_grad():
        assert torch.allclose(model(images(96, 80)), ref(images(96, 80)), atol=1e-5)
    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no backbone file" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(run), "--opset", "16", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--opset 16" in err[0] and not (tmp_path / "x.onnx").exists()
