import numpy as np
import pytest

from selfsup.schedules import cosine_schedule, linear_warmup_constant


def test_cosine_with_warmup_first_last_values():
    s = cosine_schedule(1.0, 0.1, total_steps=100, warmup_steps=10)
    assert len(s) == 100
    assert s[0] == 0.0
    assert s[10] == pytest.approx(1.0)
    assert s[-1] == pytest.approx(0.1)
    assert np.all(np.diff(s[:11]) > 0) and np.all(np.diff(s[10:]) <= 1e-12)


def test_cosine_midpoint_and_no_warmup():
    s = cosine_schedule(0.996, 1.0, total_steps=101)
    assert s[0] == pytest.approx(0.996) and s[-1] == pytest.approx(1.0)
    assert s[50] == pytest.approx(0.998)


def test_warmup_longer_than_run_is_clipped():
    """The warm-up is cut to the run's length: the whole run is a linear rise towards the base value, which
    it does not reach, and no cosine follows."""
    s = cosine_schedule(1.0, 0.0, total_steps=5, warmup_steps=50)
    assert s == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert cosine_schedule(2.0, 0.0, total_steps=4, warmup_steps=4, warmup_start=1.0) == pytest.approx(
        [1.0, 1.25, 1.5, 1.75])


def test_linear_warmup_constant():
    s = linear_warmup_constant(0.04, 0.07, total_steps=10, warmup_steps=4)
    assert s[0] == pytest.approx(0.04) and s[3] == pytest.approx(0.07) and s[-1] == pytest.approx(0.07)


def test_rejects_empty():
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(1.0, 0.0, total_steps=0)
