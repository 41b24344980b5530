import pytest
import torch

from selfsup.eval.context import EvalError, build_context
from selfsup.models.io import BackboneSpec, load_backbone, save_backbone


def test_feature_rebuilds_the_vit_with_the_same_weights(tiny_run):
    default = build_context(tiny_run, cache=False)
    ctx = build_context(tiny_run, cache=False, feature="cls-last4")
    assert (default.spec.pool, ctx.spec.pool, ctx.spec.feature) == ("cls", "cls-last4", "cls-last4")
    assert ctx.backbone.pool == "cls-last4" and ctx.backbone.feature_dim == 4 * 128
    state, want = ctx.backbone.state_dict(), load_backbone(tiny_run / "backbone.safetensors")[0].state_dict()
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)
    x = default.prepare(default.splits.test.images[:4])
    with torch.no_grad():
        last = ctx.backbone(x)[:, -128:]  # the last block's CLS is the default feature
        assert torch.allclose(last, default.backbone(x), atol=1e-5)
    assert build_context(tiny_run, cache=False, feature="cls").spec == default.spec  # the run's own


def test_an_unknown_feature_is_named_with_the_choices(tiny_run):
    with pytest.raises(EvalError, match=r"--feature 'max' is unknown: choose one of cls, mean, cls\+mean, cls-last4"):
        build_context(tiny_run, feature="max")


def test_a_resnet_has_no_feature_to_pick(tmp_path, tiny_data):
    run = tmp_path / "resnet"
    spec = BackboneSpec("resnet18", 28, 1, None, [0.2], [0.3])
    save_backbone(spec.build(), spec, run / "backbone.safetensors")
    (run / "config.yaml").write_text(f"method: simclr\ndata: {{name: {tiny_data}}}\n")
    with pytest.raises(EvalError) as e:
        build_context(run, feature="mean")
    assert "--feature mean" in str(e.value) and "average-pools" in str(e.value) and "\n" not in str(e.value)
    assert build_context(run, cache=False).spec.feature == "avgpool"


def test_a_backbone_of_another_width_and_depth_is_rebuilt_from_its_file(tmp_path):
    spec = BackboneSpec("vit-cpu", 28, 1, 7, [0.2], [0.3], "cls+mean", width=64, depth=2)
    save_backbone(spec.build(), spec, tmp_path / "b.safetensors")
    model, loaded = load_backbone(tmp_path / "b.safetensors")
    assert loaded == spec and model.feature_dim == 2 * 64 and len(model.blocks) == 2
