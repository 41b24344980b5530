import pytest
import torch
from torch import nn

from selfsup.eval import extract_features
from selfsup.eval.features import features_of_batches
from selfsup.models.resnet import resnet18


class Recorder(nn.Module):
    """Flatten + linear that records how it was called."""

    def __init__(self, dim_in: int, dim_out: int = 5):
        super().__init__()
        self.fc = nn.Linear(dim_in, dim_out)
        self.calls: list[tuple[int, bool, bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_inference_mode_enabled(), x.dtype))
        return self.fc(x.flatten(1))


def images(n: int = 10, c: int = 1, size: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def test_values_batches_and_modes():
    x = images(10)
    m = Recorder(36)
    norm = lambda t: (t - 0.5) / 0.25  # noqa: E731
    feats = extract_features(m, x, batch_size=4, normalize=norm)
    assert feats.shape == (10, 5) and feats.dtype == torch.float32
    with torch.no_grad():
        expected = m.fc(norm(x.float() / 255).flatten(1))
    assert torch.allclose(feats, expected, atol=1e-6)
    assert [c[0] for c in m.calls] == [4, 4, 2]  # one bounded batch at a time
    assert all(not train and inference and dtype == torch.float32 for _, train, inference, dtype in m.calls)
    assert m.training  # train mode restored


def test_pixels_in_unit_range_without_normalize():
    x = images(3)
    feats = extract_features(nn.Flatten(), x)
    assert torch.equal(feats, x.flatten(1).float() / 255)
    assert 0 <= feats.min() and feats.max() <= 1


def test_batch_size_invariance_and_eval_mode_restored():
    x = images(6, c=1, size=8)
    m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                      nn.BatchNorm2d(16), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():  # non-trivial running statistics, so batch statistics would give other values
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    m.eval()
    a = extract_features(m, x, batch_size=1)
    b = extract_features(m, x, batch_size=64)
    assert a.shape == (6, 16) and a.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert not m.training  # eval mode stays eval
    m.train()
    c = extract_features(m, x, batch_size=4)
    assert m.training and all(mod.training for mod in m.modules())
    assert torch.allclose(a, c, atol=1e-5, rtol=1e-4)  # running statistics were used, not batch ones


def test_resnet_features():
    m = resnet18(in_chans=1, small_stem=True)
    feats = extract_features(m, images(3, c=1, size=8), batch_size=2)
    assert feats.shape == (3, 512) and feats.dtype == torch.float32 and m.training


def test_train_flag_restored_on_error():
    m = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))  # wrong input dim -> forward raises
    with pytest.raises(RuntimeError):
        extract_features(m, images(2))
    assert m.training


def test_rejects_non_uint8_and_bad_batch_size():
    with pytest.raises(ValueError, match="uint8"):
        extract_features(nn.Flatten(), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(nn.Flatten(), images(2), batch_size=0)


class TokenPool(nn.Module):
    """Returns the first of 50 tokens: a (b, 4) view of a (b, 50, 4) tensor, as a ViT's CLS pool does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(1)[:, None, :4].expand(-1, 50, -1).contiguous()  # (b, 50, 4)
        return tokens[:, 0]


def test_features_of_batches_keeps_only_the_features_of_each_batch(monkeypatch):
    x, held, cat = images(12), [], torch.cat

    def spy(chunks):
        held.extend(c.untyped_storage().nbytes() for c in chunks)
        return cat(chunks)

    monkeypatch.setattr(torch, "cat", spy)
    feats = features_of_batches(TokenPool(), (x[i:i + 4] for i in range(0, 12, 4)))
    assert torch.equal(feats, x.flatten(1)[:, :4].float() / 255)
    assert held == [4 * 4 * 4] * 3  # each batch's (4, 4) float32 features, not its (4, 50, 4) tokens
