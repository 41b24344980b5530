import numpy as np
import pytest
import torch

from selfsup.methods.mae import MAE, MAEConfig, mae_loss, normalize_patches, patchify, unpatchify
from selfsup.methods.masking import random_mask
from selfsup.models.vit import VisionTransformer, sincos_pos_embed


def vit(**kw):
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, in_chans=kw.pop("in_chans", 1), embed_dim=32, depth=2,
                             num_heads=2, **kw)


def mae(**cfg):
    return MAE(vit(in_chans=cfg.pop("in_chans", 1)), MAEConfig(decoder_dim=16, decoder_depth=1, decoder_head_dim=8,
                                                               **cfg))


def test_patchify_round_trips_and_orders_pixels_as_the_official_code():
    x = torch.randn(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    assert torch.equal(unpatchify(patches, 4, 2, 3), x)
    # patch (row 1, col 2), pixel (row 3, col 1), channel 2
    assert patches[0, 1 * 3 + 2, (3 * 4 + 1) * 3 + 2] == x[0, 2, 4 + 3, 8 + 1]


def test_norm_pix_targets_have_zero_mean_and_unit_variance_per_patch():
    t = normalize_patches(torch.randn(3, 5, 48) * 4 + 2)
    assert torch.allclose(t.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(3, 5), atol=1e-4)


def test_loss_matches_the_paper_formula_and_counts_masked_patches_only():
    pred, target = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    want = np.mean([float(((pred[b, i] - target[b, i]) ** 2).mean()) for b in range(2) for i in range(4) if mask[b, i]])
    assert mae_loss(pred, target, mask).item() == pytest.approx(want)
    changed = pred.clone()
    changed[~mask] += 5.0  # predictions of visible patches do not count
    assert mae_loss(changed, target, mask).item() == pytest.approx(want)


def test_sincos_embeddings_equal_the_official_numpy_formula():
    def official(dim, size):  # facebookresearch/mae util/pos_embed.py, transcribed
        def one(d, pos):
            omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)
        grid = np.stack(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)), axis=0)
        emb = np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)
        return np.concatenate([np.zeros([1, dim]), emb], axis=0)
    assert np.allclose(sincos_pos_embed(16, 3, 3).numpy(), official(16, 3), atol=1e-6)


def test_encoder_sees_only_the_visible_patches_with_fixed_position_embeddings():
    m = mae()
    assert not m.backbone.pos_embed.requires_grad  # fixed sin-cos, as the paper
    x = torch.randn(6, 1, 16, 16)
    latent, mask, ids_restore = m.forward_encoder(x)
    assert latent.shape == (6, 1 + 4, 32)  # [CLS] + 25% of 16 patches
    assert (mask.sum(1) == 12).all() and ids_restore.shape == (6, 16)
    # the encoder's output does not depend on the masked patches' pixels
    torch.manual_seed(5)
    latent, mask, _ = m.forward_encoder(x)
    pix = mask.view(6, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    noisy = torch.where(pix, torch.randn_like(x), x)
    torch.manual_seed(5)
    latent2, mask2, _ = m.forward_encoder(noisy)
    assert torch.equal(mask, mask2) and torch.allclose(latent, latent2, atol=1e-6)


def test_decoder_puts_tokens_back_in_raster_order():
    m = mae()
    latent = torch.randn(2, 5, 32)
    _, ids_shuffle, ids_restore = __import__("selfsup.methods.masking", fromlist=["x"]).random_mask(2, 16, 0.75)
    out = m.forward_decoder(latent, ids_restore, 4)
    assert out.shape == (2, 16, 16)
    # moving a visible token's latent moves only the outputs through attention; the mask token's place is fixed:
    # an equivalent check is that permuting the shuffle's masked part leaves the output unchanged
    perm = torch.cat([ids_shuffle[:, :4], ids_shuffle[:, 4:].flip(1)], dim=1)
    assert torch.allclose(out, m.forward_decoder(latent, torch.argsort(perm, dim=1), 4), atol=1e-5)


def test_decoder_unshuffles_each_visible_token_to_its_own_patch():
    """Without attention blocks every output reads its own token only: the output of patch j must be the encoded
    token that the shuffle kept for j (or the mask token), at j's position embedding (models_mae.py
    forward_decoder's gather with ids_restore)."""
    m = mae()
    m.decoder_blocks = torch.nn.ModuleList()
    torch.manual_seed(1)
    _, ids_shuffle, ids_restore = random_mask(2, 16, 0.75)
    latent = torch.randn(2, 5, 32)  # [CLS] + 4 visible tokens, in the shuffle's order
    with torch.no_grad():
        out = m.forward_decoder(latent, ids_restore, 4)  # (2, 16, P) in raster order
        x, pos = m.decoder_embed(latent), sincos_pos_embed(16, 4, 4)[1:]
        for b in range(2):
            for k, j in enumerate(ids_shuffle[b].tolist()):  # the k-th token of the shuffle is patch j
                token = x[b, 1 + k] if k < 4 else m.mask_token[0, 0]
                assert torch.allclose(out[b, j], m.decoder_pred(m.decoder_norm(token + pos[j])), atol=1e-5), (b, j)


def test_uniform_masking_with_secondary_masking():
    m = mae(mask="uniform", secondary_ratio=0.25)
    x = torch.randn(4, 1, 16, 16)
    latent, mask, _ = m.forward_encoder(x)
    assert latent.shape == (4, 5, 32) and mask.float().mean() == 0.75
    loss, logs = m([x], 0)
    loss.backward()
    assert m.vis_mask_token.grad is not None and m.vis_mask_token.grad.abs().sum() > 0
    assert logs["masked"] == 0.75


def test_forward_trains_encoder_and_decoder():
    m = mae()
    loss, logs = m([torch.randn(4, 1, 16, 16)], 0)
    loss.backward()
    assert torch.isfinite(loss) and {"emb_std", "masked"} <= set(logs)
    assert m.backbone.patch_embed.proj.weight.grad is not None and m.mask_token.grad is not None


def test_reconstruction_keeps_visible_patches_and_fills_masked_ones():
    m = mae(in_chans=3)
    x = torch.randn(2, 3, 16, 16)
    out = m.reconstruct(x)
    assert set(out) == {"masked", "reconstruction", "original"}
    masked = (out["masked"] == 0).all(dim=1)  # (B, H, W)
    assert 0.7 < float(masked.float().mean()) < 0.8
    visible = ~masked.unsqueeze(1).expand_as(x)
    assert torch.allclose(out["reconstruction"][visible], x[visible])


def test_decoder_size_follows_the_encoder():
    small = MAE(vit(), MAEConfig())  # 32 wide, 2 blocks: the encoder's width, half its depth
    assert small.decoder_embed.out_features == 32 and len(small.decoder_blocks) == 1
    big = MAE(VisionTransformer(img_size=32, patch_size=16, in_chans=3, embed_dim=384, depth=2, num_heads=6),
              MAEConfig())
    assert big.decoder_embed.out_features == 512 and len(big.decoder_blocks) == 8
    assert big.decoder_blocks[0].attn.num_heads == 16
    um = MAE(VisionTransformer(img_size=32, patch_size=16, in_chans=3, embed_dim=384, depth=2, num_heads=6),
             MAEConfig(mask="uniform"))  # implus/UM-MAE PRETRAIN.md: mae_vit_base_patch16_dec512d2b
    assert um.decoder_embed.out_features == 512 and len(um.decoder_blocks) == 2


def test_uniform_masking_on_an_odd_patch_grid_is_a_config_error():
    from selfsup.config import ConfigError, build_config
    from selfsup.engine.build import build_method, resolve_sizes

    cfg = build_config({"method": "mae", "mae": {"mask": "uniform"}, "backbone": {"patch_size": 4},
                        "views": {"global_size": 28}})
    with pytest.raises(ConfigError, match="--mae.mask uniform .* 7x7 patch grid"):
        build_method(resolve_sizes(cfg, 28), 1)
