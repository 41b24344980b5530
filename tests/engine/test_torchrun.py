"""torchrun itself launching 2 CPU processes of `selfsup pretrain` (gloo), and checkpoints that resume on
another process count: 1 -> 2 processes, and 2 -> 1."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfsup.cli import build_parser, resolve_config
from selfsup.engine.pretrain import Trainer, pretrain

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason=f"no torchrun console script next to {sys.executable}: "
                                "reinstall torch in this environment to get it")

# A 1-block vit-cpu DINO on digits, batch 32 (44 steps an epoch), CPU only even where a GPU is visible.
TINY = ["--data", "digits", "--backbone", "vit-cpu", "--backbone.patch-size", "7", "--backbone.depth", "1",
        "--views.global-size", "28", "--views.n-local", "0", "--dino.out-dim", "64", "--dino.hidden-dim", "32",
        "--dino.bottleneck-dim", "16", "--batch-size", "32", "--run.eval-knn", "false", "--run.log-every", "1",
        "--run.accelerator", "cpu", "--no-progress"]


def steps(n: int) -> list[str]:
    return ["--epochs", str(n / 44)]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m selfsup.cli pretrain ARGS` (no --devices: the processes are
    torchrun's); on a timeout the whole process group is killed, so no rank is left waiting in gloo."""
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "selfsup.cli", "pretrain", *args]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def logged_steps(out: Path) -> list[int]:
    return [x["step"] for x in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in x]


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("torchrun") / "run"
    return out, torchrun(*TINY, *steps(2), "--out", str(out), "--json")


def test_torchrun_trains_two_cpu_processes_as_one_run(two_process_run):
    out, proc = two_process_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (out / "backbone.safetensors").is_file() and (out / "metrics.jsonl").is_file()
    assert logged_steps(out) == [1, 2]  # two separate 1-process runs would log every step twice
    summaries = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["steps"] == 2  # rank 0 reports
    rng = checkpoint(out)["rng"]["cpu"]  # gathered from every process
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1])


def test_a_one_process_checkpoint_resumes_on_two_processes(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, *steps(4), "--out", str(out)]
    first = Trainer(resolve_config(build_parser().parse_args(["pretrain", *args])), progress=False,
                    stop_at_step=2).fit()
    assert first.interrupted and checkpoint(out)["rng"]["cpu"].shape[0] == 1
    proc = torchrun(*args, "--resume")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stderr.count("notice: resumed 1-process checkpoint on 2 processes: RNG states re-seeded per process, "
                             "so the run is not bit-exact") == 1
    ckpt = checkpoint(out)
    assert ckpt["step"] == ckpt["total_steps"] == 4 and logged_steps(out) == [1, 2, 3, 4]
    assert ckpt["rng"]["cpu"].shape[0] == 2 and not torch.equal(ckpt["rng"]["cpu"][0], ckpt["rng"]["cpu"][1])


def test_a_two_process_checkpoint_resumes_on_one_process(two_process_run, tmp_path, capsys):
    """The 2-process run of 2 steps, continued for 2 more on one process (its schedules re-planned)."""
    out = tmp_path / "run"
    shutil.copytree(two_process_run[0], out)
    cfg = resolve_config(build_parser().parse_args(["pretrain", *TINY, *steps(4), "--out", str(out)]))
    result = pretrain(cfg, resume=True, progress=False)
    assert result.steps == 4 and logged_steps(out) == [1, 2, 3, 4]
    assert ("notice: resumed 2-process checkpoint on 1 processes: RNG states re-seeded per process, so the run is "
            "not bit-exact") in capsys.readouterr().err
    assert checkpoint(out)["rng"]["cpu"].shape[0] == 1
