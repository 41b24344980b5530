import pytest
import torch

from selfsup.models.resnet import ResNet, resnet18, resnet50

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_torchvision_without_fc():
    # torchvision's totals minus the 1000-way fc (in * 1000 + 1000)
    assert n_params(resnet18()) == 11_689_512 - 513_000 == 11_176_512
    assert n_params(resnet50()) == 25_557_032 - 2_049_000 == 23_508_032


def test_embed_dim_and_depth_validation():
    assert resnet18().embed_dim == 512
    assert resnet50().embed_dim == 2048
    with pytest.raises(ValueError, match="unsupported ResNet depth 34"):
        ResNet(depth=34)


def test_torchvision_parameter_names():
    sd18 = resnet18().state_dict()
    for n in ["conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var", "layer4.1.conv2.weight"]:
        assert n in sd18
    assert "layer1.0.downsample.0.weight" not in sd18  # layer1 of ResNet-18 keeps the shape
    assert len(sd18) == 122 - 2  # torchvision's resnet18 state_dict has 122 entries, 2 of them fc
    assert not any(n.startswith("fc.") for n in sd18)
    assert sd18["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    sd50 = resnet50().state_dict()
    for n in ["layer1.0.downsample.0.weight", "layer1.0.conv3.weight", "layer3.5.bn3.weight",
              "layer4.2.conv3.weight"]:
        assert n in sd50
    assert sd50["layer4.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd50["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


def test_checkpoint_with_fc_loads_non_strictly():
    src = resnet18().state_dict()
    ckpt = {**src, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    missing, unexpected = resnet18().load_state_dict(ckpt, strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]


def test_small_stem_28px_one_channel():
    m = resnet18(in_chans=1, small_stem=True).eval()
    x = torch.randn(1, 1, 28, 28)
    assert m.conv1.weight.shape == (64, 1, 3, 3)
    assert m.forward_features(x).shape == (1, 512, 4, 4)  # 28 -> 28 -> 14 -> 7 -> 4
    assert m(x).shape == (1, 512)


def test_standard_stem_224px():
    m18 = resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    assert m18.conv1.weight.shape == (64, 3, 7, 7)
    assert m18.forward_features(x).shape == (1, 512, 7, 7)
    assert m18(x).shape == (1, 512)
    m50 = resnet50().eval()
    assert m50.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 2, 2)


@pytest.mark.parametrize("small_stem", [False, True])
def test_any_input_size(small_stem):
    m = resnet18(in_chans=3, small_stem=small_stem).eval()
    for h, w in [(1, 1), (9, 9), (17, 23), (40, 6)]:
        assert m(torch.randn(1, 3, h, w)).shape == (1, 512)


def test_forward_is_pooled_feature_map():
    m = resnet18(small_stem=True).eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(m(x), m.forward_features(x).mean(dim=(2, 3)), atol=1e-6)


def test_zero_init_residual():
    m = resnet50()
    assert all((b.bn3.weight == 0).all() for b in m.layer2)
    assert (m.bn1.weight == 1).all()
    m = resnet18(zero_init_residual=False)
    assert all((b.bn2.weight == 1).all() for b in m.layer1)
    assert (resnet18().layer3[1].bn2.weight == 0).all()


def test_trains_with_batch_stats():
    m = resnet18(in_chans=1, small_stem=True)
    m(torch.randn(2, 1, 8, 8)).sum().backward()
    assert m.conv1.weight.grad is not None and m.layer4[1].bn2.weight.grad.abs().sum() > 0


def test_width_sets_the_first_stage_and_doubles_per_stage():
    m = ResNet(depth=18, in_chans=1, small_stem=True, width=16)
    assert m.conv1.out_channels == 16 and m.embed_dim == 128
    assert [getattr(m, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 128)
    assert resnet50(width=8).embed_dim == 256


def test_build_backbone_passes_a_resnet_width_and_refuses_a_depth():
    from selfsup.models import build_backbone

    assert build_backbone("resnet18", 28, 1, width=24).embed_dim == 192
    with pytest.raises(ValueError, match="--backbone.depth is for ViTs"):
        build_backbone("resnet18", 28, 1, depth=3)
