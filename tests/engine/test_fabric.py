import pytest

from selfsup.config import ConfigError, build_config
from selfsup.engine.fabric import default_precision, precision_words


def test_default_precision_is_bf16_only_where_the_gpu_computes_in_bf16():
    assert default_precision("cpu") == "32-true"
    assert default_precision("cuda", bf16=True) == "bf16-mixed"
    assert default_precision("cuda", bf16=False) == "16-mixed"  # V100, T4: fp16 with loss scaling


def test_the_log_says_which_precision_and_why():
    assert "16-mixed (this GPU has no bf16" in precision_words("cuda", "16-mixed", None)
    assert precision_words("cuda", "bf16-mixed", None).startswith("precision: bf16-mixed (the default on a GPU")
    assert precision_words("cpu", "bf16-mixed", "bf16-mixed") == "precision: bf16-mixed (--run.precision)"


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_half_precision_weights_are_refused_in_one_line(precision):
    with pytest.raises(ConfigError, match="precision") as e:
        build_config({"run": {"precision": precision}})
    assert "\n" not in str(e.value)


def scaled_step(precision_plugin=None) -> dict:
    """One clipped SimCLR step of the tests' tiny ViT on fixed views; the trained parameters after it."""
    import sys
    from pathlib import Path

    import torch
    from lightning.fabric import Fabric

    sys.path.insert(0, str(Path(__file__).parent))
    from ddp_worker import build, fixed_views

    from selfsup.engine.optim import param_groups
    from selfsup.engine.step import optimization_step

    fabric = Fabric(accelerator="cpu", devices=1, plugins=[precision_plugin] if precision_plugin else None)
    method = build("simclr")
    method.setup(total_steps=10, steps_per_epoch=5)
    model, optimizer = fabric.setup(method, torch.optim.SGD(param_groups(method), lr=0.0))
    optimization_step(fabric, model, method, optimizer, fixed_views(8, "simclr"), step=0, lr=0.5, wd=0.0, clip=0.01)
    return {k: v.detach().clone() for k, v in method.named_parameters()}


def test_16_mixed_clips_the_unscaled_gradients():
    """GradScaler multiplies the loss by 65,536: clipped before unscaling, every gradient would be cut to the clip
    norm and then divided by the scale, an update 65,536x too small. The scaled step (fp32 compute, so only the
    scaling differs) must equal the plain one."""
    import torch
    from lightning.fabric.plugins.precision import MixedPrecision

    class ScaledFp32(MixedPrecision):  # GradScaler's loss scaling without fp16 compute (CPU has no fp16 autocast)
        def forward_context(self):
            return torch.autocast("cpu", enabled=False)

        def convert_input(self, data):
            return data

    plain = scaled_step()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaled = scaled_step(ScaledFp32("16-mixed", "cpu", scaler=scaler))
    assert scaler.get_scale() == 2.0**16  # no overflow: the step was taken, not skipped
    for k, v in plain.items():
        assert torch.allclose(v, scaled[k], atol=1e-6), k
