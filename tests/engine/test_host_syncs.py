"""Host reads of tensor values in a training step off the log steps: on a GPU each one waits for the device (a
sync), so a step reads one value only, the finite flag (as DINO's `math.isfinite(loss.item())`). Counted on the
CPU by wrapping the Tensor methods that read a value; reads of tensors built on the host (the masks of iBOT and
DINOv2, drawn in Python as the official collate does; the list of view sizes) are allowed by their place."""

import collections
import sys
import traceback
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import TINY, build, fixed_views  # noqa: E402

from selfsup.engine.optim import param_groups  # noqa: E402
from selfsup.engine.step import optimization_step  # noqa: E402

READS = ("item", "__bool__", "__int__", "__float__", "tolist")
HOST_BUILT = {"masking.py", "base.py"}  # block masks drawn on the host; the sizes of the views (a host list)


def reads_in_a_step(name: str, monkeypatch) -> collections.Counter:
    fabric = Fabric(accelerator="cpu", devices=1)
    method = build(name)
    method.setup(total_steps=10, steps_per_epoch=5)
    model, optimizer = fabric.setup(method, torch.optim.SGD(param_groups(method), lr=0.0))
    views = fixed_views(8, name)
    optimization_step(fabric, model, method, optimizer, views, 0, 0.1, 0.0, 3.0, diagnostics=False)
    found: collections.Counter = collections.Counter()
    for read in READS:
        original = getattr(torch.Tensor, read)

        def counted(self, *args, _original=original, _read=read, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            found[f"{Path(caller.filename).name}:{caller.lineno} {_read}"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, read, counted)
    optimization_step(fabric, model, method, optimizer, views, 1, 0.1, 0.0, 3.0, diagnostics=False)
    monkeypatch.undo()
    return found


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_step_off_the_log_steps_reads_only_the_finite_flag(name, monkeypatch):
    found = reads_in_a_step(name, monkeypatch)
    device_reads = {k: n for k, n in found.items() if k.split(":")[0] not in HOST_BUILT}
    assert list(device_reads.values()) == [1] and next(iter(device_reads)).startswith("step.py:"), found
