import pytest

from selfsup.cli import main
from selfsup.web.explore import RUNS_ENV, UPLOAD_ENV
from selfsup.web.serve import serve_command


def test_serve_command_binds_localhost_and_passes_the_limits(runs_dir):
    cmd, env = serve_command(runs_dir, "127.0.0.1", 8600, 2.5)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "3"  # streamlit's own cap, whole MB, above ours
    assert env[RUNS_ENV] == str(runs_dir.resolve()) and env[UPLOAD_ENV] == "2.5"


@pytest.mark.parametrize("make, message", [(lambda p: p / "missing", "is not a folder"),
                                           (lambda p: p, "holds no run")])
def test_serve_refuses_folders_without_runs(tmp_path, capsys, make, message):
    assert main(["serve", "--runs", str(make(tmp_path))]) == 2
    assert message in capsys.readouterr().err
