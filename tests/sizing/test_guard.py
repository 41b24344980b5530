"""The checks before the first step, with injected memory, cores and activation sizes (nothing measured)."""

import pytest

from selfsup.config import ConfigError, build_config
from selfsup.engine.build import resolve_sizes
from selfsup.machine import GIB, Resources
from selfsup.sizing import DataFacts
from selfsup.sizing.guard import SAFE_SHARE, fit_batch_to_data, fit_memory, fit_workers
from selfsup.sizing.memory import ACTIVATION_OVERHEAD, BASE_BYTES, Activations

PHOTOS = DataFacts(2000, 224, 3, streamed=True)
MIB = 1024**2


def cfg(**optim):
    raw = {"data": {"name": "x", "workers": 1}, "views": {"global_size": 64, "local_size": 32},
           "backbone": {"patch_size": 8}, "optim": {"batch_size": 256, **optim}}
    return resolve_sizes(build_config(raw), 64)


def probe(model=100 * MIB, backbone=8 * MIB, rest=1 * MIB):
    return lambda c, channels: (model, Activations(backbone, rest))


def test_a_run_that_fits_is_left_alone_and_said_in_one_line():
    c, lines = fit_memory(cfg(), {}, PHOTOS, Resources(2, 24 * GIB), probe())
    assert c.optim.batch_size == 256 and c.optim.micro_batches == 1
    assert len(lines) == 1 and lines[0].startswith("memory: peak about 3.8 GiB")
    assert "within 75% of 24.0 GiB" in lines[0]


def test_the_estimate_adds_base_model_activations_data_and_workers():
    c, lines = fit_memory(cfg(), {}, PHOTOS, Resources(2, 24 * GIB), probe(model=GIB, backbone=0, rest=0))
    assert "model 1.00, activations 0.00" in lines[0] and "workers 0.25" in lines[0]
    assert f"base {BASE_BYTES / GIB:.2f} GiB" in lines[0]


def test_a_batch_too_large_for_memory_is_halved_with_a_notice():
    # 256 images x 9 MiB x 1.2 = 2.7 GiB of activations and 1 GiB more: 4 GiB available (3 GiB safe) takes 128
    c, lines = fit_memory(cfg(), {}, PHOTOS, Resources(2, 4 * GIB), probe())
    assert 128 * 9 * MIB * ACTIVATION_OVERHEAD + BASE_BYTES < SAFE_SHARE * 4 * GIB
    assert c.optim.batch_size == 128 and c.optim.micro_batches == 1
    assert lines[0].startswith("notice: batch 256 in 1 micro-batch(es) would peak at about")
    assert f"batch {c.optim.batch_size} in 1 micro-batch(es) instead" in lines[0]


def test_a_batch_the_user_gave_is_kept_and_split_into_micro_batches():
    c, lines = fit_memory(cfg(), {"optim": {"batch_size": 256}}, PHOTOS, Resources(2, 4 * GIB), probe())
    assert c.optim.batch_size == 256 and c.optim.micro_batches > 1
    assert "micro-batch(es) instead" in lines[0]


def test_nothing_fits_is_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        fit_memory(cfg(), {"optim": {"batch_size": 256, "micro_batches": 1}}, PHOTOS, Resources(2, 2 * GIB), probe())
    assert "\n" not in str(e.value) and "lower --batch-size" in str(e.value) and "2.0 GiB available" in str(e.value)


def test_a_gpu_holds_the_model_and_activations():
    gpu = Resources(16, 64 * GIB, "H100", 8 * GIB)
    c, lines = fit_memory(cfg(), {}, PHOTOS, gpu, probe(backbone=64 * MIB))
    assert lines[-1].startswith("memory: peak about GPU") and c.optim.batch_size < 256


def test_a_batch_larger_than_the_data_is_lowered_with_a_notice():
    c, lines = fit_batch_to_data(cfg(), DataFacts(240, 224, 3, True))  # 300 photos, 80% of them for training
    assert c.optim.batch_size == 128
    assert lines == ["notice: --batch-size 256 is larger than the 240 training images: lowered to 128"]
    assert fit_batch_to_data(cfg(), PHOTOS) == (cfg(), [])


def test_workers_are_held_to_the_cores():
    many = build_config({"data": {"name": "x", "workers": 4}})
    c, lines = fit_workers(many, PHOTOS, Resources(2, 24 * GIB))
    assert c.data.workers == 2 and lines == ["notice: --data.workers 4 is more than the 2 cores: lowered to 2"]
    assert fit_workers(many, PHOTOS, Resources(8, 24 * GIB))[0].data.workers == 4
