"""selfsup's ViT against DINOv2's own model code (tests/models/official_dinov2.py, a verbatim reference copy):
LayerScale, register tokens, the SwiGLU feed-forward and both position-embedding resizings give the official
outputs, token for token, at the stored grid and at other sizes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from selfsup.models.vit import VisionTransformer, vit
from selfsup.models.vit_layers import swiglu_hidden

sys.path.insert(0, str(Path(__file__).parent))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the reference says "xFormers is not available" on import
    import official_dinov2 as official  # noqa: E402

KEYS = ("x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens", "x_prenorm")


def official_model(registers: bool, ffn: str = "mlp") -> torch.nn.Module:
    """A small DINOv2 ViT with the hub's settings for the original or the `_reg` models, random weights far from
    the initialisation (LayerScale 1.0 would hide a missing gamma)."""
    torch.manual_seed(0)
    model = official.DinoVisionTransformer(
        img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=4, init_values=1.0, ffn_layer=ffn,
        block_chunks=0, num_register_tokens=4 if registers else 0, interpolate_antialias=registers,
        interpolate_offset=0.0 if registers else 0.1).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model


def ours(registers: bool, ffn: str, pos_interp: str) -> VisionTransformer:
    return VisionTransformer(img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=4, init_values=1.0,
                             ffn=ffn, num_register_tokens=4 if registers else 0, pos_interp=pos_interp).eval()


@pytest.mark.parametrize(("registers", "ffn", "pos_interp"), [(False, "mlp", "dino"), (True, "mlp", "size-antialias"),
                                                             (True, "swiglu", "size-antialias")])
def test_the_official_weights_give_the_official_tokens_at_every_size(registers, ffn, pos_interp):
    ref = official_model(registers, "swiglufused" if ffn == "swiglu" else "mlp")
    model = ours(registers, ffn, pos_interp)
    state = {k: v for k, v in ref.state_dict().items() if k != "mask_token"}  # iBOT's, unused by the backbone
    model.load_state_dict(state, strict=True)
    for hw in ((56, 56), (28, 42), (84, 70)):  # the stored 4x4 grid, a smaller and a larger non-square one
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            want, got = ref.forward_features(x), model.forward_features(x)
        for key in KEYS:
            assert got[key].shape == want[key].shape, key
            assert torch.allclose(got[key], want[key], atol=1e-5), (key, hw)
        with torch.no_grad():
            cls = ref(x)  # the hub model's forward: the normalised CLS token
        assert torch.allclose(model(x), cls, atol=1e-5)


@pytest.mark.parametrize(("registers", "wrong"), [(False, "size"), (True, "dino"), (True, "size")])
def test_another_resizing_of_the_position_embeddings_gives_other_tokens(registers, wrong):
    ref = official_model(registers)
    model = ours(registers, "mlp", wrong)
    model.load_state_dict({k: v for k, v in ref.state_dict().items() if k != "mask_token"})
    x = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        diff = ref.forward_features(x)["x_norm_patchtokens"] - model.forward_features(x)["x_norm_patchtokens"]
    assert diff.abs().max() > 1e-3


def test_registers_sit_after_cls_and_no_feature_reads_them():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=1, num_heads=2,
                          num_register_tokens=3).eval()
    x = torch.randn(2, 1, 28, 28)
    out = m.forward_features(x)
    assert out["x_norm_regtokens"].shape == (2, 3, 16) and out["x_norm_patchtokens"].shape == (2, 16, 16)
    assert out["x_prenorm"].shape == (2, 1 + 3 + 16, 16)
    tokens = m.prepare_tokens(x)
    assert torch.equal(tokens[:, 1:4], m.register_tokens.expand(2, -1, -1))  # no position embedding on them
    for pool, want in (("cls", out["x_norm_clstoken"]), ("mean", out["x_norm_patchtokens"].mean(1)),
                       ("patches", out["x_norm_patchtokens"].flatten(1))):
        m.pool = pool
        assert torch.allclose(m(x), want, atol=1e-6), pool
    assert m.get_last_selfattention(x).shape == (2, 2, 20, 20)


def test_layerscale_and_swiglu_have_dinov2s_parameters():
    m = vit("vit-cpu", 28, 1, init_values=1e-5, registers=4, ffn="swiglu")
    names = dict(m.named_parameters())
    assert torch.equal(names["blocks.0.ls1.gamma"], torch.full((128,), 1e-5))
    assert names["register_tokens"].shape == (1, 4, 128)
    assert names["blocks.0.mlp.w12.weight"].shape == (2 * swiglu_hidden(512), 128)
    assert swiglu_hidden(4 * 1536) == 4096  # ViT-g/14's hidden width (dinov2 SwiGLUFFNFused)
    plain = vit("vit-cpu", 28, 1)
    assert not any(".ls1." in n or "register" in n or ".w12." in n for n, _ in plain.named_parameters())
