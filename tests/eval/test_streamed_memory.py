"""Peak memory of streamed evaluation does not grow with the number of images (measured in a subprocess, as
tests/data/test_streaming.py measures pre-training)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIDE = 96  # the backbone's input side: in memory, 3 * 96 * 96 bytes per image

PEAK = """
import resource, sys
from selfsup.eval.context import build_context
peaks = []
for folder in sys.argv[2:]:
    ctx = build_context(sys.argv[1], folder, data_stream="always", batch_size=64, data_workers=1)
    x, _ = ctx.features("train", labelled=False)
    assert len(x) == len(ctx.splits.train)
    peaks.append(max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
print(*(p // 1024 for p in peaks))
"""


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128
    a, b = rng.uniform(0, 8, 2)
    rgb = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - a * yy), np.sin(a * xx * yy)], -1)
    buf = io.BytesIO()
    Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def flat_folders(tmp_path_factory) -> list[Path]:
    """Flat folders of 500 and 4,000 128-px JPEGs (16 distinct ones repeated: fast to write)."""
    base = tmp_path_factory.mktemp("flat")
    pictures = [_jpeg(i) for i in range(16)]
    folders = []
    for n in (500, 4000):
        folders.append(base / str(n))
        folders[-1].mkdir()
        for i in range(n):
            (folders[-1] / f"{i:05d}.jpg").write_bytes(pictures[i % 16])
    return folders


def test_peak_memory_of_streamed_features_does_not_grow_with_the_number_of_images(tmp_path, flat_folders,
                                                                                 tiny_vit_run):
    run = tiny_vit_run(tmp_path / "run", size=SIDE, patch=16)
    # A fixed mmap threshold keeps glibc from serving the per-batch tensors from a heap whose fragmentation
    # adds tens of MiB of noise unrelated to the number of images; the peak then shows what the code holds.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PEAK, str(run), *map(str, flat_folders)], capture_output=True,
                         text=True, check=True, env=env)
    small, large = map(int, out.stdout.split())  # MiB, after 500 and after 4,000 more images
    in_memory_growth = 3500 * 3 * SIDE * SIDE / 2**20  # 92 MiB for the images alone
    assert large - small < 25 < in_memory_growth, (small, large)
