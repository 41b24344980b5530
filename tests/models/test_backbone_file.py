"""A backbone file from elsewhere: its metadata is checked before anything is built from it, and a damaged or
half-written file is one BackboneFileError naming it."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from selfsup.models import io
from selfsup.models.io import BackboneFileError, BackboneSpec, load_backbone, save_backbone

SPEC = BackboneSpec("vit-cpu", 28, 1, 7, [0.5], [0.25], stem="conv")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "backbone.safetensors"
    save_backbone(SPEC.build(), SPEC, path)
    return path


def rewrite_metadata(path, **changes):
    """The file's tensors with its spec metadata changed."""
    meta = {**SPEC.__dict__, **changes}
    save_file(load_file(str(path)), str(path), metadata={"selfsup_backbone": json.dumps(meta)})


@pytest.mark.parametrize("changes, message", [
    ({"img_size": 10**7}, "img_size=10000000 (expected an integer in [1, 4096])"),
    ({"width": 2**20}, "width=1048576"),
    ({"depth": "4"}, "depth='4'"),
    ({"registers": -1}, "registers=-1"),
    ({"stem": "magic"}, "stem='magic'"),
    ({"std": [0.0]}, "std=[0.0]"),
    ({"mean": [0.5, 0.5]}, "expected 1 finite numbers"),
])
def test_absurd_metadata_is_refused_in_one_line_before_building(saved, monkeypatch, changes, message):
    rewrite_metadata(saved, **changes)
    monkeypatch.setattr(BackboneSpec, "build", lambda self: pytest.fail("built from absurd metadata"))
    with pytest.raises(BackboneFileError, match="its metadata says") as e:
        load_backbone(saved)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_metadata_that_disagrees_with_the_tensors_allocates_nothing(saved, monkeypatch):
    rewrite_metadata(saved, img_size=4096, patch_size=4, stem="patch")  # a 1M-token position embedding: 512 MB
    devices = []
    real = BackboneSpec.build
    monkeypatch.setattr(BackboneSpec, "build", lambda self: devices.append(torch.empty(0).device.type) or real(self))
    with pytest.raises(BackboneFileError, match=r"does not fit backbone vit-cpu .*pos_embed \(1, 17, 128\) "
                                                r"\(expected \(1, 1048577, 128\)\)"):
        load_backbone(saved)
    assert devices == ["meta"]  # checked on the meta device only


def test_a_half_written_or_foreign_file_is_one_error(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, 40, 3):
        saved.write_bytes(data[:cut])
        with pytest.raises(BackboneFileError, match="backbone.safetensors"):
            load_backbone(saved)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))  # no selfsup metadata
    with pytest.raises(BackboneFileError, match="cannot read .*other.safetensors as a selfsup backbone"):
        load_backbone(other)


def test_every_kind_loads_and_checks_its_shapes(tmp_path):
    for spec in (SPEC, BackboneSpec("vit-cpu", 28, 3, 14, [0.5] * 3, [0.25] * 3, layerscale=1e-5, registers=4,
                                    ffn="swiglu"),
                 BackboneSpec("resnet18", 32, 3, None, [0.5] * 3, [0.25] * 3, width=8)):
        save_backbone(spec.build(), spec, tmp_path / "b.safetensors")
        model, got = load_backbone(tmp_path / "b.safetensors")
        assert got == spec and io.check_shapes(spec, {k: tuple(v.shape) for k, v in model.state_dict().items()},
                                               tmp_path) is None
