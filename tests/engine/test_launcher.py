"""Processes started by torchrun or srun train together: --devices/--num-nodes left at their defaults take the
launcher's counts, contradicting ones are refused with the fix."""

import pytest

from selfsup.config import ConfigError
from selfsup.engine.launcher import Launched, launched_processes, process_counts

LAUNCHER_VARS = ["TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE",
                 "SLURM_NNODES", "SLURM_JOB_NAME"]


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_without_a_launcher_the_options_stand(env):
    assert launched_processes() is None
    assert process_counts(1, 1) == (1, 1) and process_counts(4, 2) == (4, 2)
    assert process_counts("auto", 1) == ("auto", 1)


def test_torchrun_counts_replace_the_defaults(env):
    env(TORCHELASTIC_RUN_ID="job", WORLD_SIZE="8", LOCAL_WORLD_SIZE="4")
    assert launched_processes() == Launched("torchrun", 4, 2)
    assert process_counts(1, 1) == (4, 2) and process_counts("auto", 1) == (4, 2)
    assert process_counts(4, 2) == (4, 2) and process_counts("4", 2) == ("4", 2)


def test_srun_counts_replace_the_defaults(env):
    env(SLURM_NTASKS="8", SLURM_NTASKS_PER_NODE="4", SLURM_NNODES="2", SLURM_JOB_NAME="pretrain")
    assert launched_processes() == Launched("srun", 4, 2)
    assert process_counts(1, 1) == (4, 2)


def test_counts_that_contradict_the_launcher_are_refused(env):
    env(TORCHELASTIC_RUN_ID="job", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    with pytest.raises(ConfigError, match="--devices 4 --num-nodes 1 ask .* but torchrun started 2 on each of 1: "
                                          "pass --devices 2 --num-nodes 1, or leave both out"):
        process_counts(4, 1)
