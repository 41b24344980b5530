"""`selfsup pretrain` with only --data: the sized recipe printed and saved; any flag still wins."""

import pytest
import yaml
from photos import wave_photo  # tests/photos.py

from selfsup import sizing
from selfsup.cli import main
from selfsup.config import build_config
from selfsup.machine import GIB, Resources


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(sizing, "resources", lambda: Resources(2, 24 * GIB))


@pytest.mark.usefixtures("two_cores", "one_thread")
def test_only_data_prints_the_choices_and_saves_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "digits", "--epochs", "0.02", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "sized for 1,437 grayscale images of 28 px, in memory; 2 cores, 24.0 GiB available, no GPU"
    assert any(x.startswith("images of 28 px on a CPU: the demo's recipe") for x in printed)
    assert any(x.startswith("batch 64: 22 steps an epoch of 1,437 images") for x in printed)
    assert any(x.startswith("memory: peak about") for x in printed)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "simclr" and saved["optim"]["batch_size"] == 64
    assert saved["views"]["global_size"] == 28 and saved["backbone"]["patch_size"] == 7


@pytest.mark.usefixtures("two_cores", "one_thread")
def test_flags_override_the_sized_choices(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "digits", "--epochs", "0.02", "--out", str(out), "--no-progress",
                 "--method", "dino", "--patch-size", "4", "--batch-size", "32", "--views.n-local", "0",
                 "--dino.out-dim", "64"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "dino" and saved["backbone"]["patch_size"] == 4
    assert saved["optim"]["batch_size"] == 32 and saved["views"]["n_local"] == 0
    assert saved["views"]["global_size"] == 28  # chosen for the rest: 7 patches of 4 px a side


@pytest.mark.usefixtures("two_cores")
def test_a_batch_larger_than_the_data_is_lowered_not_refused(tmp_path, capsys):
    for i in range(30):
        folder = tmp_path / "photos" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        wave_photo((40, 40), i).save(folder / f"{i}.png")
    facts = sizing.probe_data(build_config({"data": {"name": str(tmp_path / "photos")}}).data)
    assert facts.count == 24 and facts.streamed and facts.side == 40  # 80% of 30 for training
    cfg, lines = sizing.sized_config({"data": {"name": str(tmp_path / "photos")}, "optim": {"batch_size": 256}})
    assert cfg.optim.batch_size == 16
    assert "notice: --batch-size 256 is larger than the 24 training images: lowered to 16" in lines
