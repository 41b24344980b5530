import pytest

from selfsup.cli import main
from selfsup.web import serve as serve_module
from selfsup.web.explore import DATA_ROOT_ENV, RUNS_ENV, UPLOAD_ENV


@pytest.fixture
def started(monkeypatch):
    """What `selfsup serve` would run: the streamlit command and its environment, captured instead."""
    calls = []
    monkeypatch.setattr(serve_module.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    return calls


def test_serve_binds_the_loopback_address_unless_told_otherwise(runs_dir, started, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, "/")  # a data root left in the caller's environment is not passed on
    assert main(["serve", "--runs", str(runs_dir), "--max-upload-mb", "2.5"]) == 0
    cmd, env = started[-1]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"  # what the CLI decides, not what a test passes
    assert cmd[cmd.index("--server.port") + 1] == "8501"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "3"  # streamlit's own cap, whole MB, above ours
    assert env[RUNS_ENV] == str(runs_dir.resolve()) and env[UPLOAD_ENV] == "2.5" and DATA_ROOT_ENV not in env


def test_serve_passes_a_data_root_only_when_named(runs_dir, tmp_path, started):
    assert main(["serve", "--runs", str(runs_dir), "--data-root", str(tmp_path), "--host", "0.0.0.0"]) == 0
    cmd, env = started[-1]
    assert env[DATA_ROOT_ENV] == str(tmp_path.resolve()) and cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


@pytest.mark.parametrize("args, message", [(["--runs", "{tmp}/missing"], "is not a folder"),
                                           (["--runs", "{tmp}/empty"], "holds no run"),
                                           (["--runs", "{runs}", "--data-root", "{tmp}/missing"], "--data-root")])
def test_serve_refuses_folders_without_runs(runs_dir, tmp_path, capsys, started, args, message):
    (tmp_path / "empty").mkdir()
    assert main(["serve", *(a.format(tmp=tmp_path, runs=runs_dir) for a in args)]) == 2
    assert message in capsys.readouterr().err and not started


def test_serve_help_says_what_the_page_opens(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reads files under it only" in text and "--data-root" in text and "opens nothing else" not in text
