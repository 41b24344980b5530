"""Which official code wrote a checkpoint, judged by its keys (models/layouts.py): the source, or a one-line
refusal naming the candidates when several layouts look alike."""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import selfsup
from selfsup.models.checkpoint_file import ConvertError, read_checkpoint
from selfsup.models.layouts import detect_source

sys.path.insert(0, str(Path(__file__).parent))
from official_vit import DINOV2_CASES, LAYOUTS, dinov2_reference, reference, write_layout  # noqa: E402

TINY = {"backbone": "vit-tiny", "width": 48, "depth": 2, "num_heads": 3}  # the reference's size (patch 8, 64 px)


@pytest.fixture(scope="module")
def nets():
    """Teacher and student of the official reference ViT (width 48, depth 2, 3 heads, 8-px patches, 64 px)."""
    return reference(0), reference(1)


def _guess(path):
    return detect_source(read_checkpoint(path), path)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_guess_from_the_keys_is_the_source_or_a_refusal(layout, nets, tmp_path, one_thread):
    source, _, _, guess = LAYOUTS[layout]
    path = write_layout(layout, *nets, tmp_path / "ckpt.pth")
    if guess is None:
        with pytest.raises(ConvertError) as e:
            _guess(path)
        message = str(e.value)
        assert "\n" not in message and str(path) in message and f"--from {source}" in message
        assert message.count("--from ") == 2 and "source=" in message
        with pytest.raises(ConvertError, match="share and whose defaults differ"):
            selfsup.load_backbone(path, **TINY)
    else:
        assert _guess(path) == guess == source  # test_convert.py checks the converted network's outputs


@pytest.mark.parametrize("case", list(DINOV2_CASES))
def test_the_guess_recognises_dinov2_files(case, tmp_path):
    registers, ffn, chunks, writer, source = DINOV2_CASES[case]
    path = tmp_path / ("model.safetensors" if source == "timm" else "model.pth")
    state = writer(dinov2_reference(registers, ffn, chunks))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path)) if source == "timm" else torch.save(state, path)
    assert _guess(path) == source


def test_the_guess_refuses_dinov2_look_alikes(tmp_path):
    ref = dinov2_reference()
    backbone = {k: v for k, v in ref.state_dict().items() if k != "mask_token"}
    torch.save({"teacher": {"backbone." + k: v for k, v in backbone.items()}}, tmp_path / "teacher.pth")
    with pytest.raises(ConvertError, match="dino and dinov2 share .*pass --from dino or --from dinov2"):
        _guess(tmp_path / "teacher.pth")
    torch.save(backbone, tmp_path / "layerscale.pth")  # LayerScale without DINOv2's mask_token: timm's names too
    with pytest.raises(ConvertError, match="dinov2 and timm share .*pass --from dinov2 or --from timm"):
        _guess(tmp_path / "layerscale.pth")
