import pytest
import torch
from lightning.fabric import Fabric

from selfsup.config import ConfigError
from selfsup.engine.rng import gather_rng_states, restore_rng_states


@pytest.fixture
def fabric():
    return Fabric(accelerator="cpu", devices=1)


def test_restored_states_repeat_the_same_draws(fabric):
    states = gather_rng_states(fabric)
    assert states["cpu"].shape[0] == 1 and "cuda" not in states
    first = torch.rand(5)
    torch.rand(3)  # the generator moves on
    restore_rng_states(fabric, states)
    assert torch.equal(torch.rand(5), first)


def test_checkpoints_before_the_cuda_state_hold_the_cpu_states_alone(fabric):
    states = gather_rng_states(fabric)["cpu"]
    first = torch.rand(4)
    restore_rng_states(fabric, states)
    assert torch.equal(torch.rand(4), first)


def test_another_process_count_is_refused(fabric):
    two = {"cpu": torch.get_rng_state()[None].repeat(2, 1)}
    with pytest.raises(ConfigError, match="written by 2 processes; resume with the same --devices"):
        restore_rng_states(fabric, two)
