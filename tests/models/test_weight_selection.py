"""Weight selection: first blocks, evenly spaced channels, whole heads, and one line when it cannot apply."""

import pytest
import torch

from selfsup.models.resnet import resnet18
from selfsup.models.vit import VisionTransformer
from selfsup.models.weight_selection import evenly, select_weights, unselectable


def vit(width: int = 32, heads: int = 4, depth: int = 2, **kw) -> VisionTransformer:
    return VisionTransformer(**{"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": width, "depth": depth,
                                "num_heads": heads, **kw})


def test_evenly_keeps_every_other_index_of_twice_the_size():
    assert evenly(8, 4).tolist() == [0, 2, 4, 6]
    assert evenly(6, 4).tolist() == [0, 1, 3, 4]
    assert evenly(5, 5).tolist() == [0, 1, 2, 3, 4]


def test_a_shallower_student_computes_the_teachers_first_blocks():
    torch.manual_seed(0)
    teacher, student = vit(depth=3, init_values=0.5, num_register_tokens=2), vit(depth=1, init_values=0.5,
                                                                                 num_register_tokens=2)
    select_weights(student, teacher)
    x = torch.randn(2, 1, 16, 16)
    # the teacher's normalised tokens after its first block are the student's final ones
    want = teacher.get_intermediate_layers(x, 3)[0]
    torch.testing.assert_close(student.get_intermediate_layers(x, 1)[0], want)


def test_a_half_width_vit_keeps_whole_heads_and_every_other_residual_channel():
    torch.manual_seed(0)
    teacher, student = vit(width=32, heads=4), vit(width=16, heads=2)  # head width 8 in both
    select_weights(student, teacher)
    t, s = teacher.state_dict(), student.state_dict()
    residual = torch.arange(0, 32, 2)
    heads = torch.cat([torch.arange(0, 8), torch.arange(16, 24)])  # heads 0 and 2 of 4
    qkv_rows = torch.cat([heads, 32 + heads, 64 + heads])  # q, k and v keep the same heads
    torch.testing.assert_close(s["blocks.1.attn.qkv.weight"], t["blocks.1.attn.qkv.weight"][qkv_rows][:, residual])
    torch.testing.assert_close(s["blocks.1.attn.proj.weight"], t["blocks.1.attn.proj.weight"][residual][:, heads])
    torch.testing.assert_close(s["blocks.0.mlp.fc1.weight"], t["blocks.0.mlp.fc1.weight"][::2, ::2])
    torch.testing.assert_close(s["pos_embed"], t["pos_embed"][..., residual])
    torch.testing.assert_close(s["norm.weight"], t["norm.weight"][residual])


def test_narrower_heads_keep_evenly_spaced_channels_within_each_head():
    torch.manual_seed(0)
    teacher, student = vit(width=32, heads=4), vit(width=16, heads=4)  # head width 8 -> 4
    select_weights(student, teacher)
    rows = torch.cat([torch.arange(h * 8, h * 8 + 8, 2) for h in range(4)])
    want = teacher.state_dict()["blocks.0.attn.qkv.bias"][torch.cat([rows, 32 + rows, 64 + rows])]
    torch.testing.assert_close(student.state_dict()["blocks.0.attn.qkv.bias"], want)


def test_the_position_grid_is_resampled_to_the_students_crop():
    torch.manual_seed(0)
    teacher, student = vit(), vit(width=16, heads=2, img_size=24)
    select_weights(student, teacher)
    want = teacher.interpolate_pos_encoding(6, 6)[..., ::2]
    torch.testing.assert_close(student.pos_embed.detach(), want)


def test_a_half_width_resnet_takes_every_other_channel_with_its_batchnorm_statistics():
    torch.manual_seed(0)
    teacher, student = resnet18(in_chans=1, small_stem=True, width=16), resnet18(in_chans=1, small_stem=True, width=8)
    with torch.no_grad():
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
    select_weights(student, teacher)
    t, s = teacher.state_dict(), student.state_dict()
    torch.testing.assert_close(s["layer2.0.conv1.weight"], t["layer2.0.conv1.weight"][::2, ::2])
    torch.testing.assert_close(s["layer3.1.bn2.running_mean"], t["layer3.1.bn2.running_mean"][::2])


@pytest.mark.parametrize("student, teacher, words", [
    (vit(), resnet18(in_chans=1, width=8), "VisionTransformer and the teacher a ResNet"),
    (vit(width=64, heads=4), vit(), "cls_token is (1, 1, 64) in the student"),
    (vit(depth=3), vit(), "the teacher has no blocks.2"),
    (vit(heads=8), vit(), "8 heads"),
    (vit(patch_size=8), vit(), "patch_embed.proj.weight"),
    (vit(in_chans=3), vit(), "3-channel"),
])
def test_a_student_that_is_no_slimmer_copy_is_refused_with_the_reason(student, teacher, words):
    assert words in unselectable(student, teacher)
    with pytest.raises(ValueError, match=words.split(" ")[0]):
        select_weights(student, teacher)
