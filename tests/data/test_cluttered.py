import numpy as np
import pytest
import torch

from selfsup.data import cluttered
from selfsup.data.cluttered import compose, generate
from selfsup.data.dataset import DataError, ImageSet


def disc_objects(n: int = 6) -> ImageSet:
    """Constant-intensity discs of growing radius as 28x28 objects, class = index."""
    yy, xx = np.mgrid[:28, :28]
    discs = [((yy - 13.5) ** 2 + (xx - 13.5) ** 2 < (5 + 1.5 * i) ** 2) * 200 for i in range(n)]
    return ImageSet(torch.tensor(np.stack(discs), dtype=torch.uint8)[:, None], torch.arange(n), list("abcdef")[:n])


def test_masks_match_the_pasted_objects_exactly(monkeypatch):
    monkeypatch.setattr(cluttered, "background", lambda rng, size: np.zeros((size, size, 3), np.uint8))
    s = generate(disc_objects(), 40, 48, seed=3)
    assert s.images.shape == (40, 3, 48, 48) and s.masks.shape == (40, 48, 48)
    painted = s.images.amax(dim=1) > 0  # bright colours on a black background
    assert torch.equal(painted, s.masks > 0)
    assert 1 <= int(s.masks.amax()) <= cluttered.MAX_OBJECTS


def test_the_label_is_the_class_of_the_largest_visible_object():
    s = generate(disc_objects(), 30, 64, seed=1)
    rng = np.random.default_rng(1)
    src, cls = disc_objects().images[:, 0].numpy(), disc_objects().labels.numpy()
    for i in range(30):
        img, mask, label = compose(rng, src, cls, 64)
        assert np.array_equal(img, s.images[i].permute(1, 2, 0).numpy()) and label == s.labels[i]
        assert np.array_equal(mask, s.masks[i].numpy())


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = (generate(disc_objects(), 8, 32, seed) for seed in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)


def test_backgrounds_are_textured_photos():
    photos = cluttered.backgrounds()
    assert len(photos) >= 5 and all(p.ndim == 3 and p.shape[2] == 3 for p in photos)
    s = generate(disc_objects(), 10, 32, seed=0)
    background = s.images.permute(0, 2, 3, 1)[s.masks == 0].float()
    assert background.std() > 8  # not a flat colour


def test_too_small_and_resized_masks_are_refused():
    with pytest.raises(DataError, match="at least 16 px"):
        generate(disc_objects(), 2, 8, seed=0)
    s = generate(disc_objects(), 2, 32, seed=0)
    with pytest.raises(DataError, match="masks must be uint8"):
        ImageSet(s.images[:, :, :16, :16], s.labels, masks=s.masks)


def test_load_data_generates_at_the_size_asked(monkeypatch):
    from selfsup.data import load_data
    from selfsup.eval.subsets import holdout_splits

    monkeypatch.setattr(cluttered, "N_TRAIN", 40)
    monkeypatch.setattr(cluttered, "N_TEST", 10)
    s = load_data("cluttered", image_size=48)
    assert s.train.images.shape == (40, 3, 48, 48) and s.test.masks.shape == (10, 48, 48)
    assert load_data("cluttered-96").train.images.shape[-1] == 96
    held = holdout_splits(s, 0.25)  # a validation split keeps the masks
    assert held.test.masks is not None and len(held.test) == 10
    i = 3
    assert any(torch.equal(held.test.images[i], s.train.images[j]) and torch.equal(held.test.masks[i], s.train.masks[j])
               for j in range(40))


def test_subset_keeps_labels_and_masks_together():
    s = generate(disc_objects(), 6, 32, seed=2)
    part = s.subset(torch.tensor([4, 1]))
    assert torch.equal(part.images, s.images[[4, 1]]) and torch.equal(part.masks, s.masks[[4, 1]])
    assert part.labels.tolist() == s.labels[[4, 1]].tolist() and part.classes == s.classes
    assert ImageSet(s.images[:2]).subset(torch.tensor([1])).masks is None
