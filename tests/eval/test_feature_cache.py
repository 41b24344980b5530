import torch

from selfsup.data import ImageSet
from selfsup.eval.context import build_context
from selfsup.eval.feature_cache import FeatureCache, FeatureKey
from selfsup.eval.feature_source import FeatureSource
from selfsup.eval.features import extract_features
from selfsup.models.io import file_sha256, load_backbone, save_backbone


def test_features_are_cached_per_split_and_match_a_fresh_extraction(tiny_run):
    ctx = build_context(tiny_run)
    x, y = ctx.features("train")
    x2, y2 = ctx.features("train")
    ctx.features("test")
    assert (ctx.cache.misses, ctx.cache.hits) == (2, 1)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (150, 128)
    assert torch.equal(x, extract_features(ctx.backbone, ctx.splits.train.images, normalize=ctx.prepare))
    files = sorted(p.name.split("-")[0] for p in (tiny_run / "eval" / "features").glob("*.pt"))
    assert files == ["test", "train"]
    again = build_context(tiny_run)  # a new process reads the files
    assert torch.equal(again.features("train")[0], x) and (again.cache.hits, again.cache.misses) == (1, 0)


def test_a_changed_checkpoint_recomputes_and_replaces_the_file(tiny_run):
    before = build_context(tiny_run).features("train")[0]
    backbone, spec = load_backbone(tiny_run / "backbone.safetensors")
    with torch.no_grad():
        backbone.cls_token.add_(1.0)
    save_backbone(backbone, spec, tiny_run / "backbone.safetensors")
    ctx = build_context(tiny_run)
    after = ctx.features("train")[0]
    assert (ctx.cache.hits, ctx.cache.misses) == (0, 1)
    assert not torch.allclose(before, after)
    assert torch.equal(after, extract_features(backbone, ctx.splits.train.images, normalize=ctx.prepare))
    assert len(list((tiny_run / "eval" / "features").glob("train-*.pt"))) == 1
    assert ctx.checkpoint == file_sha256(tiny_run / "backbone.safetensors")


def test_changed_images_or_a_corrupt_file_are_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    model = torch.nn.Flatten()
    images = torch.randint(0, 256, (4, 1, 3, 3), dtype=torch.uint8)
    source = FeatureSource(model, None, cache=cache, checkpoint="sha", data="d", feature="cls")
    a, _ = source.features("train", ImageSet(images))
    b, _ = source.features("train", ImageSet(255 - images))
    assert cache.misses == 2 and not torch.equal(a, b)
    key = FeatureKey("sha", "d", "train", 3, 1, "x", "cls")
    cache.path(key).write_bytes(b"not a torch file")
    assert cache.load(key) is None
    assert cache.get(key, lambda: torch.ones(2, 2)).sum() == 4 and cache.load(key).sum() == 4


def test_no_cache_leaves_the_run_untouched(tiny_run):
    ctx = build_context(tiny_run, cache=False)
    ctx.features("train")
    assert ctx.cache is None and not (tiny_run / "eval").exists()


def test_each_feature_has_its_own_file(tmp_path):
    cache = FeatureCache(tmp_path)
    keys = [FeatureKey("sha", "d", "train", 3, 1, "x", feature) for feature in ("cls", "cls-last4")]
    assert cache.path(keys[0]) != cache.path(keys[1])
    cache.save(keys[0], torch.zeros(2, 4))
    assert cache.load(keys[1]) is None and cache.load(keys[0]).shape == (2, 4)
