import pytest

from selfsup.config import ConfigError, build_config
from selfsup.engine.build import build_method, check_views, resolve_sizes
from selfsup.methods import METHODS


def cfg(**backbone):
    raw = {"method": "simclr", "data": {"name": "digits"}, "views": {"global_size": 28, "n_local": 0},
           "backbone": {"name": "vit-cpu", "patch_size": 7, **backbone}}
    return resolve_sizes(build_config(raw), 28)


def test_width_and_depth_reach_the_backbone():
    method = build_method(cfg(width=64, depth=2), channels=1)
    assert (method.backbone.embed_dim, len(method.backbone.blocks)) == (64, 2)


def test_a_width_that_does_not_split_into_heads_names_the_option_and_the_fix():
    with pytest.raises(ConfigError, match=r"--backbone.width 100 .* choose a multiple of 32"):
        build_method(cfg(width=100), channels=1)


def test_a_crop_that_the_patch_does_not_divide_names_both():
    with pytest.raises(ConfigError, match="--views.global_size 28 is not a multiple of the patch size 8"):
        build_method(cfg(patch_size=8), channels=1)


def test_patch_dropout_reaches_the_online_backbone_not_the_momentum_teacher():
    raw = {"method": "moco-v3", "data": {"name": "digits"}, "views": {"global_size": 28, "n_local": 0},
           "backbone": {"name": "vit-cpu", "patch_size": 7, "patch_dropout": 0.5, "stem": "conv"}}
    method = build_method(resolve_sizes(build_config(raw), 28), channels=1)
    assert method.backbone.patch_dropout == 0.5
    teachers = [m for name, m in method.named_modules() if name != "backbone" and hasattr(m, "patch_dropout")]
    assert teachers and all(m.patch_dropout == 0.0 for m in teachers)
    assert type(method.backbone.patch_embed).__name__ == "ConvStem"
    assert all(p.requires_grad for p in method.backbone.patch_embed.parameters())  # moco-v3 freezes patchify only


def test_patch_dropout_is_refused_where_the_method_reads_the_patch_grid_or_the_backbone_is_a_resnet():
    raw = {"method": "mae", "data": {"name": "digits"}, "views": {"global_size": 28, "n_global": 1, "n_local": 0},
           "backbone": {"name": "vit-cpu", "patch_size": 7, "patch_dropout": 0.5}}
    with pytest.raises(ConfigError, match=r"mae reads the ViT's patch grid .* --backbone.patch-dropout 0"):
        build_method(resolve_sizes(build_config(raw), 28), channels=1)
    with pytest.raises(ConfigError, match="resnet18 is a ResNet"):
        build_method(cfg(name="resnet18", patch_size=None, patch_dropout=0.5), channels=1)


@pytest.mark.parametrize(("method", "n_global", "n_local", "fix"), [
    ("distill", 3, 0, "set --views.n-global 1 or 2 --views.n-local 0"),  # one view, or two with its own term
    ("byol", 1, 0, "set --views.n-global 2 --views.n-local 0"),
    ("byol", 2, 4, "set --views.n-global 2 --views.n-local 0"),
    ("rotation", 2, 0, "set --views.n-global 1 --views.n-local 0"),
])
def test_a_wrong_view_count_names_the_counts_the_method_takes(method, n_global, n_local, fix):
    with pytest.raises(ConfigError, match=f"got --views.n-global {n_global} and --views.n-local {n_local}") as err:
        check_views(method, METHODS[method], n_global, n_local)
    assert fix in str(err.value) and "(only dino, " in str(err.value)
    check_views(method, METHODS[method], int(fix.split()[2]), 0)  # the fix it names is accepted


def test_train_pool_is_what_the_head_reads_and_pool_what_evaluation_reads():
    import torch

    from selfsup.models.vit import pool_tokens

    method = build_method(cfg(train_pool="mean", pool="patches", patch_dropout=0.5), channels=1)
    backbone = method.backbone
    assert backbone.pool == "mean"  # the head's input; the saved spec keeps --backbone.pool (patches)
    x = torch.randn(3, 1, 28, 28)
    backbone.eval()
    tokens = backbone.get_intermediate_layers(x, 1)[0]
    assert torch.allclose(backbone(x), pool_tokens(tokens, "mean", backbone.n_prefix), atol=1e-6)
    assert not torch.allclose(backbone(x), tokens[:, 0], atol=1e-3)
    assert build_method(cfg(), channels=1).backbone.pool == "cls"  # the papers' default


def test_train_pool_is_refused_where_the_method_reads_the_tokens_itself():
    raw = {"method": "ibot", "data": {"name": "digits"}, "views": {"global_size": 28, "n_local": 0},
           "backbone": {"name": "vit-cpu", "patch_size": 7, "train_pool": "mean"}}
    with pytest.raises(ConfigError, match=r"ibot reads the ViT's tokens itself.*drop --backbone.train-pool mean "
                                          r"\(it applies to .*simclr"):
        build_method(resolve_sizes(build_config(raw), 28), channels=1)
