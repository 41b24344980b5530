import pytest
import torch

from selfsup.models.vit import POOLS, VisionTransformer, drop_patches, vit


def test_official_parameter_names():
    names = set(vit("vit-small", 224, 3).state_dict())
    for n in ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight",
              "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.11.mlp.fc1.weight",
              "blocks.11.mlp.fc2.bias", "norm.weight"]:
        assert n in names
    assert sum(p.numel() for p in vit("vit-small", 224, 3).parameters()) == 21_665_664  # DINO ViT-S/16


def test_pos_embed_interpolation_any_crop():
    m = VisionTransformer(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    assert m.interpolate_pos_encoding(7, 7) is m.pos_embed
    pe = m.interpolate_pos_encoding(3, 5)
    assert pe.shape == (1, 1 + 15, 32)
    assert torch.equal(pe[:, 0], m.pos_embed[:, 0])  # CLS position is kept
    for size in (12, 28, 44):
        assert m(torch.randn(2, 1, size, size)).shape == (2, 32)


def test_interpolation_of_constant_grid_is_constant():
    m = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=8, depth=1, num_heads=2)
    with torch.no_grad():
        m.pos_embed[:, 1:] = 0.5
    assert torch.allclose(m.interpolate_pos_encoding(6, 6)[:, 1:], torch.full((1, 36, 8), 0.5), atol=1e-5)


def test_patch_size_must_divide():
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="not divisible by patch size 7"):
        m(torch.randn(1, 1, 30, 30))


def test_attention_maps_and_sdpa_agree_with_explicit_softmax():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=4).eval()
    x = torch.randn(2, 3, 16, 16)
    attn = m.get_last_selfattention(x)
    assert attn.shape == (2, 4, 17, 17)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 17), atol=1e-5)
    tokens = m.prepare_tokens(x)
    for blk in m.blocks[:-1]:
        tokens = blk(tokens)
    fast = m.blocks[-1](tokens)
    slow, _ = m.blocks[-1](tokens, return_attention=True)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_drop_path_only_in_training():
    m = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2,
                          drop_path_rate=0.5)
    x = torch.randn(4, 1, 16, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x))


def test_pool_options_give_cls_mean_or_both():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    x = torch.randn(3, 1, 28, 28)
    tokens = m.get_intermediate_layers(x)[0]  # (3, 17, 16)
    cls, mean = tokens[:, 0], tokens[:, 1:].mean(1)
    assert torch.allclose(m(x), cls)
    for pool, want in (("mean", mean), ("cls+mean", torch.cat([cls, mean], 1))):
        m.pool = pool
        assert torch.allclose(m(x), want, atol=1e-6)
    assert vit("vit-cpu", 28, 1, 7, pool="cls+mean").feature_dim == 2 * 128
    with pytest.raises(ValueError, match="pool"):
        vit("vit-cpu", 28, 1, 7, pool="max")


def test_cls_last4_concatenates_the_normalised_cls_of_each_of_the_last_4_blocks():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=5, num_heads=2,
                          pool="cls-last4").eval()
    x = torch.randn(3, 1, 28, 28)
    tokens, cls = m.prepare_tokens(x), []
    for blk in m.blocks:  # by hand: the shared final norm applied to every block's output
        tokens = blk(tokens)
        cls.append(m.norm(tokens)[:, 0])
    got = m(x)
    assert got.shape == (3, 4 * 16) and m.feature_dim == 4 * 16
    assert torch.allclose(got, torch.cat(cls[1:], dim=1), atol=1e-6)  # blocks 1-4 of 0-4
    assert not torch.allclose(got, torch.cat(cls[:4], dim=1), atol=1e-3)  # not the first 4
    layers = m.get_intermediate_layers(x, 2)
    assert len(layers) == 2 and torch.allclose(layers[0][:, 0], cls[3], atol=1e-6)
    assert torch.allclose(layers[1], m.norm(m.forward_features(x)["x_prenorm"]), atol=1e-6)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("depth", [2, 5])
def test_feature_dim_is_the_output_width(pool, depth):
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=depth, num_heads=2, pool=pool)
    width = {"cls": 16, "mean": 16, "cls+mean": 32, "cls-last4": 16 * min(4, depth), "patches": 16 * 16}[pool]
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, width) and m.feature_dim == width


def test_patches_feature_is_the_token_grid_in_raster_order_and_refuses_patch_dropout():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=2, num_heads=2,
                          pool="patches").eval()
    x = torch.randn(3, 1, 28, 28)
    tokens = m.get_intermediate_layers(x)[0]  # (3, 1 + 16, 16)
    got = m(x)
    assert torch.equal(got.view(3, 16, 16), tokens[:, 1:])
    assert torch.equal(got[:, 16 * 5:16 * 6], tokens[:, 6])  # patch (row 1, col 1) is the 6th token
    m.train()
    m.patch_dropout = 0.5
    with pytest.raises(ValueError, match="patches feature reads the whole token grid"):
        m(x)


def test_width_and_depth_override_the_preset_and_keep_its_head_width():
    net = vit("vit-cpu", 28, 1, width=96, depth=3)
    assert (net.embed_dim, len(net.blocks), net.blocks[0].attn.num_heads) == (96, 3, 3)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 96)
    with pytest.raises(ValueError, match="--backbone.width 100 is not a multiple of vit-cpu's 32"):
        vit("vit-cpu", 28, 1, width=100)


def test_patch_dropout_keeps_cls_and_a_random_share_of_patches_in_place():
    torch.manual_seed(0)
    tokens = torch.arange(17.0).view(1, 17, 1).expand(3, 17, 2)  # token i holds the value i
    out = drop_patches(tokens, 0.5)
    assert out.shape == (3, 9, 2)
    assert torch.equal(out[:, 0], tokens[:, 0])  # [CLS] always kept
    kept = out[:, 1:, 0]
    assert (kept.diff(dim=1) > 0).all()  # distinct patches, in raster order
    assert not torch.equal(kept[0], kept[1])  # each image draws its own
    assert drop_patches(tokens, 0.99).shape == (3, 2, 2)  # at least one patch


def test_patch_dropout_only_in_training_and_only_on_the_pooled_path():
    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=16, depth=2, num_heads=2, pool="mean")
    m.patch_dropout = 0.5
    x = torch.randn(2, 1, 28, 28)
    seen = []
    m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    m.eval()
    full = m(x)
    m.train()
    torch.manual_seed(0)
    dropped = m(x)
    assert seen == [17, 9]  # the blocks ran on 1 + 16 tokens in evaluation, 1 + 8 in training
    assert not torch.allclose(full, dropped)
    assert m.forward_features(x)["x_norm_patchtokens"].shape == (2, 16, 16)  # grids stay whole (dense, attention)
    m.patch_dropout = 0.0
    assert torch.allclose(m(x), full, atol=1e-6)


def test_conv_stem_embeds_to_the_patch_grid_and_is_saved_in_the_spec(tmp_path):
    from selfsup.models.io import BackboneSpec, load_backbone, save_backbone

    m = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=1, num_heads=2, stem="conv")
    convs = [c for c in m.patch_embed.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)]  # ceil(log2 7) = 3 stride-2 convs, then 1x1
    assert [c.out_channels for c in convs] == [8, 16, 32, 32]  # doubling up to the width
    for size in (14, 21, 28, 35):  # crops of up to 8 patches a side: the grid of 7-px patches
        assert m.patch_embed(torch.randn(2, 1, size, size)).shape == (2, (size // 7) ** 2, 32)
    for hw, grid in (((70, 70), (9, 9)), ((294, 448), (37, 56)), ((33, 17), (5, 3))):  # any size: ceil(side / 8)
        assert m.grid_size(*hw) == grid and m.stride == 8
        assert m.patch_embed(torch.randn(1, 1, *hw)).shape == (1, grid[0] * grid[1], 32)
        assert m.eval().forward_features(torch.randn(1, 1, *hw))["x_norm_patchtokens"].shape[1] == grid[0] * grid[1]
    with pytest.raises(ValueError, match="unknown ViT stem"):
        VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=1, num_heads=2, stem="x")
    spec = BackboneSpec("vit-cpu", 28, 1, 7, [0.5], [0.5], width=32, depth=1, stem="conv")
    model = spec.build().eval()
    save_backbone(model, spec, tmp_path / "b.safetensors")
    loaded, loaded_spec = load_backbone(tmp_path / "b.safetensors")
    assert loaded_spec.stem == "conv"
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(loaded.eval()(x), model(x), atol=1e-6)
