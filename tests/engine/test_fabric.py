import pytest

from selfsup.config import ConfigError, build_config
from selfsup.engine.fabric import default_precision


def test_default_precision_is_bf16_only_where_the_gpu_computes_in_bf16():
    assert default_precision("cpu") == "32-true"
    assert default_precision("cuda", bf16=True) == "bf16-mixed"
    assert default_precision("cuda", bf16=False) == "16-mixed"  # V100, T4: fp16 with loss scaling


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_half_precision_weights_are_refused_in_one_line(precision):
    with pytest.raises(ConfigError, match="precision") as e:
        build_config({"run": {"precision": precision}})
    assert "\n" not in str(e.value)
