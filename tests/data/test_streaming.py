"""Streamed image folders and tar shards: bounded memory, the batches of in-memory data, exact resume, bad
files skipped and counted."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from photos import wave_photo  # tests/photos.py
from PIL import Image

from selfsup.config import ConfigError, DataConfig, build_config
from selfsup.data import stream_kind
from selfsup.data.batch_source import Layout, epoch_order
from selfsup.data.shards import TarShards, write_shards
from selfsup.engine.data import open_data
from selfsup.engine.pretrain import Trainer, pretrain


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _class_folder(root: Path, per_class: int = 8, classes: str = "abc") -> Path:
    """root/<class>/<i>.jpg|png of varying sizes and aspect ratios."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = wave_photo((40 + 7 * i, 36 + 5 * (i % 3)), 100 * c + i)
            if i % 4 == 3:
                image.save(root / name / f"{i}.png")
            else:
                (root / name / f"{i}.jpg").write_bytes(_jpeg(image))
    return root


@pytest.fixture(scope="session")
def big_folders(tmp_path_factory) -> dict[int, Path]:
    """Flat folders of 2,000 and 8,000 256-px JPEGs (32 distinct ones repeated: writing them is fast)."""
    base = tmp_path_factory.mktemp("big")
    pictures = [_jpeg(wave_photo((256, 256), i)) for i in range(32)]
    folders = {}
    for n in (2000, 8000):
        folders[n] = base / str(n)
        folders[n].mkdir()
        for i in range(n):
            (folders[n] / f"{i:05d}.jpg").write_bytes(pictures[i % 32])
    return folders


PEAK = """
import resource, sys
from selfsup.config import DataConfig
from selfsup.data.batch_source import Layout, epoch_order
from selfsup.engine.data import open_data
data = open_data(DataConfig(name=sys.argv[1], image_size=112, load_size=128, workers=1), 0)
data.eval_splits(112, labelled=False)
source = data.source(Layout(0, 250), 112)
for step, batch in zip(range(source.steps_per_epoch), source.batches(0)):
    assert batch.shape == (250, 3, 128, 128)
usage = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(max(usage) // 1024, step + 1)
"""


def _peak_mib(folder: Path) -> tuple[int, int]:
    """(peak RSS in MiB of a process that opens `folder` streamed and reads one epoch, steps read)."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(folder)], capture_output=True, text=True, check=True)
    peak, steps = out.stdout.split()
    return int(peak), int(steps)


def test_peak_memory_of_an_epoch_does_not_grow_with_the_number_of_images(big_folders):
    small, steps_small = _peak_mib(big_folders[2000])
    large, steps_large = _peak_mib(big_folders[8000])
    assert (steps_small, steps_large) == (8, 32)
    in_memory_growth = 6000 * 3 * 128 * 128 / 2**20  # 281 MiB for the images alone at the load side
    assert large - small < 40 < in_memory_growth, (small, large)


def test_streamed_batches_equal_in_memory_ones_at_the_same_size(tmp_path):
    folder = str(_class_folder(tmp_path / "photos"))
    memory = open_data(DataConfig(name=folder, stream="never", image_size=24), seed=0)
    streamed = open_data(DataConfig(name=folder, stream="always", load_size=24, workers=1), seed=0)
    assert streamed.count == memory.count == 18 and streamed.channels == memory.channels == 3
    for rank in (0, 1):
        layout = Layout(seed=3, world_batch=8, rank=rank, world=2)
        a, b = memory.source(layout, 24), streamed.source(layout, 24)
        assert a.steps_per_epoch == b.steps_per_epoch == 2
        got = [x for _, x in zip(range(5), b.batches(0), strict=False)]  # three epochs, decoded by a worker
        for step in range(5):
            assert torch.equal(a.batch(step), got[step]), (rank, step)
            assert torch.equal(b.batch(step), got[step])
    assert torch.equal(streamed.sample(24), memory.sample(24))  # the statistics match too


def _run_cfg(folder: Path, out: Path, **data) -> object:
    return build_config({
        "method": "dino", "data": {"name": str(folder), "image_size": 28, **data},
        "backbone": {"name": "vit-cpu", "patch_size": 7}, "views": {"local_size": 14, "n_local": 2},
        "optim": {"epochs": 4 / 3, "batch_size": 16, "warmup_epochs": 0.05},
        "run": {"out": str(out), "eval_knn": True, "log_every": 1, "checkpoint_every": 100},
        "dino": {"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32}})


def _model(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def test_a_streamed_run_equals_an_in_memory_run_and_resumes_exactly(tmp_path):
    folder = _class_folder(tmp_path / "photos", per_class=20)  # 48 train / 12 test images: 3 steps an epoch
    memory = pretrain(_run_cfg(folder, tmp_path / "memory", stream="never"), progress=False)
    straight = pretrain(_run_cfg(folder, tmp_path / "straight", load_size=28, workers=1), progress=False)
    cfg = _run_cfg(folder, tmp_path / "resumed", load_size=28, workers=1)
    assert Trainer(cfg, progress=False, stop_at_step=2).fit().steps == 2
    resumed = pretrain(cfg, resume=True, progress=False)
    assert memory.steps == straight.steps == resumed.steps == 4
    a, b, c = (_model(tmp_path / name) for name in ("memory", "straight", "resumed"))
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]) and torch.equal(v, c["model"][k]), k
    assert torch.equal(a["rng"]["cpu"], b["rng"]["cpu"]) and torch.equal(b["rng"]["cpu"], c["rng"]["cpu"])
    assert memory.knn == straight.knn and straight.knn["n_test"] == 12  # the evaluation split, in memory


def test_a_corrupt_file_found_mid_epoch_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(16):
        (folder / f"{i:02d}.jpg").write_bytes(_jpeg(wave_photo((48, 40), i)))
    (folder / "07.jpg").write_bytes((folder / "07.jpg").read_bytes()[:300])  # truncated: found when decoded
    data = open_data(DataConfig(name=str(folder), load_size=32, workers=1), seed=0)
    source = data.source(Layout(seed=0, world_batch=8), 32)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file.*its batch: 07\.jpg \(OSError"):
        batches = [x for _, x in zip(range(4), source.batches(0), strict=False)]  # two epochs: warned once
    assert source.skips.count == 1 and source.skips.notice() == "skipped 1 unreadable image file(s)"
    assert all(b.shape == (8, 3, 32, 32) for b in batches)
    first_epoch = torch.cat(batches[:2])
    assert len({x.numpy().tobytes() for x in first_epoch}) == 15  # the bad one replaced by a batch-mate


def test_skipped_files_are_counted_in_the_metrics_from_the_step_that_meets_them(tmp_path):
    """A pre-training run on a folder with a corrupt JPEG: metrics.jsonl carries the running count
    `skipped_files` from the log step whose batch held it on, and not before (nor on a clean folder)."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(24):
        (folder / f"{i:02d}.jpg").write_bytes(_jpeg(wave_photo((48, 40), i)))
    (folder / "13.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")  # found when decoded
    cfg = build_config({
        "method": "dino", "data": {"name": str(folder), "image_size": 28, "load_size": 28, "workers": 1},
        "backbone": {"name": "vit-cpu", "patch_size": 7, "depth": 1}, "views": {"local_size": 14, "n_local": 0},
        "optim": {"epochs": 1, "batch_size": 4, "warmup_epochs": 0.05},
        "run": {"out": str(tmp_path / "run"), "eval_knn": False, "log_every": 1, "checkpoint_every": 100,
                "accelerator": "cpu"},
        "dino": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16}})
    data = open_data(cfg.data, seed=0)
    files = [Path(data.files[i]).name for i in range(data.count)]
    order = epoch_order(data.count, Layout(cfg.run.seed, 4), 0).tolist()
    met = order.index(files.index("13.jpg")) // 4 + 1  # the log step (1-based) whose batch holds it
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file.*13\.jpg"):
        result = pretrain(cfg, progress=False)
    assert result.steps == 6
    lines = [x for x in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in x]
    assert [(x["step"], x.get("skipped_files")) for x in lines] == [(s, 1 if s >= met else None) for s in range(1, 7)]
    (folder / "13.jpg").unlink()
    clean = build_config({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "out": str(tmp_path / "clean")}})
    pretrain(clean, progress=False)
    assert not any("skipped_files" in x for x in (tmp_path / "clean" / "metrics.jsonl").read_text().splitlines())


def _shards(tmp_path: Path, per_shard: int) -> tuple[Path, list[Path]]:
    folder = _class_folder(tmp_path / "photos", per_class=10, classes="ab")
    for name in "ab":  # no test split: every file is a training file and goes into the shards
        for p in (folder / name).iterdir():
            p.rename(folder / f"{name}_{p.name}")
        (folder / name).rmdir()
    return folder, write_shards(folder, tmp_path / "shards", per_shard=per_shard)


def test_tar_shards_round_trip(tmp_path):
    folder, shards = _shards(tmp_path, per_shard=6)
    assert [p.name for p in shards] == [f"shard-00000{i}.tar" for i in range(4)]
    assert stream_kind(str(tmp_path / "shards")) == "shards" and stream_kind(str(folder)) == "folder"
    pattern = str(tmp_path / "shards" / "shard-{000000..000003}.tar")
    data = open_data(DataConfig(name=pattern, load_size=24, workers=0), seed=0)
    assert isinstance(data, TarShards) and data.count == 20 and data.channels == 3
    source = data.source(Layout(seed=1, world_batch=5), 24)
    epoch = torch.cat([x for _, x in zip(range(source.steps_per_epoch), source.batches(0), strict=False)])
    memory = open_data(DataConfig(name=str(folder), stream="never", image_size=24), seed=0).sample(24)
    as_set = sorted(x.numpy().tobytes() for x in epoch)
    assert as_set == sorted(x.numpy().tobytes() for x in memory)  # every image once an epoch, decoded alike


def test_tar_shards_resume_exactly_and_skip_bad_samples(tmp_path):
    _, shards = _shards(tmp_path, per_shard=5)
    with tarfile.open(shards[1], "a") as tar:  # a sample whose image is not an image
        info = tarfile.TarInfo("zz_bad.jpg")
        info.size = 10
        tar.addfile(info, io.BytesIO(b"not a jpeg"))
    data = open_data(DataConfig(name=str(tmp_path / "shards"), load_size=16, workers=2, shuffle_buffer=4), seed=0)
    assert data.count == 21
    source = data.source(Layout(seed=2, world_batch=4), 16)
    assert source.steps_per_epoch == 5
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file.*shard-000001.tar:zz_bad"):
        straight = [x for _, x in zip(range(12), source.batches(0), strict=False)]
    assert source.skips.count == 1
    resumed = [x for _, x in zip(range(5), source.batches(7), strict=False)]  # mid-epoch 1, into epoch 2
    assert all(torch.equal(a, b) for a, b in zip(straight[7:], resumed, strict=True))
    assert torch.equal(source.batch(8), straight[8])
    assert not any(torch.equal(straight[0], x) for x in straight[5:10])  # epochs are shuffled apart


def test_stream_option_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="digits .* cannot be streamed: use --data.stream auto"):
        open_data(DataConfig(name="digits", stream="always"), seed=0)
    _, _ = _shards(tmp_path, per_shard=10)
    with pytest.raises(ConfigError, match="only streamed: use --data.stream auto"):
        open_data(DataConfig(name=str(tmp_path / "shards"), stream="never"), seed=0)
    with pytest.raises(ConfigError, match="--data.holdout"):
        open_data(DataConfig(name=str(tmp_path / "shards"), holdout=0.2), seed=0)
    from selfsup.data import DataError

    with pytest.raises(DataError, match="missing-000001.tar not found"):
        open_data(DataConfig(name=str(tmp_path / "missing-{000001..000002}.tar")), seed=0)


def test_streamed_evaluation_split_is_capped_and_held_out(tmp_path):
    folder = str(_class_folder(tmp_path / "photos", per_class=10))
    data = open_data(DataConfig(name=folder, eval_images=5, holdout=0.2), seed=0)
    assert data.count == 18 and data.labels is not None  # 30 files, 80/20, then 0.2 of train held out
    splits = data.eval_splits(16)
    assert len(splits.train) == 5 and len(splits.test) == 5 and splits.test.labels is not None
    assert splits.train.size == 16 and "5 of the 18 train and 5 of the 6 test" in splits.notice
    assert "held-out 0.2" in data.name
    assert data.eval_splits(16, labelled=False).test is None  # no evaluation asked for: nothing decoded for it


def test_a_shard_that_breaks_off_is_read_up_to_the_break(tmp_path):
    _, shards = _shards(tmp_path, per_shard=5)
    shards[3].write_bytes(shards[3].read_bytes()[: shards[3].stat().st_size // 2])
    with pytest.warns(UserWarning, match="shard-000003.tar: unreadable after [1-4] sample"):
        data = open_data(DataConfig(name=str(tmp_path / "shards"), load_size=16, workers=0), seed=0)
    assert 16 <= data.count < 20
    source = data.source(Layout(seed=0, world_batch=4), 16)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file.*shard-000003.tar \\(ReadError"):
        batches = [x for _, x in zip(range(source.steps_per_epoch), source.batches(0), strict=False)]
    assert len(batches) == 4 and all(b.shape == (4, 3, 16, 16) for b in batches)
