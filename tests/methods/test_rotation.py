import numpy as np
import torch

from selfsup.methods.rotation import Rotation, RotationConfig, rotations


def test_the_copy_labelled_k_is_the_image_turned_k_quarter_turns():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)  # every pixel distinct
    batch, labels = rotations(x)
    assert batch.shape == (8, 3, 5, 5) and labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    for k in range(4):
        assert torch.equal(batch[labels == k], torch.rot90(x, k, dims=(-2, -1)))
    # the official rotate_img(img, 90) on an (H, W, C) image: np.flipud(np.transpose(img, (1, 0, 2)))
    hwc = x[0].permute(1, 2, 0).numpy()
    official = np.flipud(np.transpose(hwc, (1, 0, 2))).copy()
    assert torch.equal(batch[1].permute(1, 2, 0), torch.from_numpy(official))
    assert len({tuple(b.flatten().tolist()) for b in batch[:4]}) == 4  # the four copies differ


def test_loss_is_the_cross_entropy_of_the_rotation_labels(tiny_vit):
    method = Rotation(tiny_vit, RotationConfig(head_layers=2, head_hidden_dim=8))
    x = torch.randn(3, 1, 16, 16)
    loss, logs = method([x], 0, diagnostics=True)
    turned = torch.cat([torch.rot90(x[i:i + 1], k, dims=(-2, -1)) for i in range(3) for k in range(4)])
    logits = method.head(tiny_vit(turned))  # (12, 4)
    labels = torch.arange(4).repeat(3)
    p = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    assert torch.allclose(loss, -p[torch.arange(12), labels].log().mean(), atol=1e-5)
    assert logs["acc"] == (logits.argmax(1) == labels).float().mean().item()
    assert set(logs) == {"acc", "emb_std", "emb_std_ideal", "emb_rank"}


def test_rotation_trains_a_resnet_on_rgb():
    from selfsup.models.resnet import resnet18

    method = Rotation(resnet18(in_chans=3), RotationConfig())
    loss, logs = method([torch.randn(4, 3, 12, 12)], 0, diagnostics=False)
    loss.backward()
    assert logs == {} and method.head[0].weight.grad is not None
