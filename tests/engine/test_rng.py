import pytest
import torch
from lightning.fabric import Fabric

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


class _Process:
    """What restore_rng_states reads of a Fabric: process `rank` of `world` on the CPU; print as Fabric's
    (rank 0 only)."""

    def __init__(self, rank: int, world: int) -> None:
        self.global_rank, self.world_size, self.device = rank, world, torch.device("cpu")

    def print(self, *args, **kwargs) -> None:
        if self.global_rank == 0:
            print(*args, **kwargs)


def _draws_after_restore(fabric, states) -> torch.Tensor:
    torch.manual_seed(12345)  # whatever the generator held before
    restore_rng_states(fabric, states)
    return torch.rand(6)


def test_another_process_count_reseeds_each_process_deterministically(capsys):
    """A 1-process checkpoint on 2 processes: each rank draws its own stream, the same on every resume, and
    neither repeats the saved stream; the notice is printed once (rank 0)."""
    torch.manual_seed(7)
    one = gather_rng_states(Fabric(accelerator="cpu", devices=1))
    saved_stream = torch.rand(6)
    rank0, rank1 = (_draws_after_restore(_Process(r, 2), one) for r in (0, 1))
    assert not torch.equal(rank0, rank1)
    assert torch.equal(_draws_after_restore(_Process(0, 2), one), rank0)
    assert torch.equal(_draws_after_restore(_Process(1, 2), one), rank1)
    assert not torch.equal(rank0, saved_stream) and not torch.equal(rank1, saved_stream)
    err = capsys.readouterr().err.splitlines()
    assert err.count("notice: resumed 1-process checkpoint on 2 processes: RNG states re-seeded per process, so "
                     "the run is not bit-exact") == 2  # rank 0's two restores; rank 1 prints nothing


def test_the_reseed_depends_on_the_saved_states(fabric, capsys):
    """2 processes' states on 1 process (a real Fabric): the draws follow the checkpoint's states."""
    a = {"cpu": torch.stack([torch.manual_seed(s).get_state() for s in (1, 2)])}
    b = {"cpu": torch.stack([torch.manual_seed(s).get_state() for s in (3, 4)])}
    assert not torch.equal(_draws_after_restore(fabric, a), _draws_after_restore(fabric, b))
    assert torch.equal(_draws_after_restore(fabric, a), _draws_after_restore(fabric, a))
    assert "resumed 2-process checkpoint on 1 processes: RNG states re-seeded" in capsys.readouterr().err
