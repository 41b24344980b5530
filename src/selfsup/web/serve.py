"""`selfsup serve`: start the Streamlit page on a run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from selfsup.web.explore import DATA_ROOT_ENV, RUNS_ENV, UPLOAD_ENV, find_runs

APP = Path(__file__).with_name("app.py")


def serve_command(runs: str | Path, host: str, port: int, max_upload_mb: float,
                  data_root: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The streamlit command line and environment for the page on `runs` (and the runs' training data under
    `data_root`, when given)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
           "--server.maxUploadSize", str(max(1, int(max_upload_mb + 0.999))), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    env = {**os.environ, RUNS_ENV: str(Path(runs).resolve()), UPLOAD_ENV: str(max_upload_mb)}
    env.pop(DATA_ROOT_ENV, None)  # only what this command names: never a root left in the caller's environment
    if data_root is not None:
        env[DATA_ROOT_ENV] = str(Path(data_root).resolve())
    return cmd, env


def serve(runs: str | Path, host: str = "127.0.0.1", port: int = 8501, max_upload_mb: float = 5.0,
          data_root: str | Path | None = None) -> int:
    """Run the page until interrupted; returns streamlit's exit status."""
    from selfsup.data.dataset import DataError

    if not Path(runs).is_dir():
        raise DataError(f"--runs {runs} is not a folder: pass the folder holding your run directories")
    if not find_runs(runs):
        raise DataError(f"--runs {runs} holds no run (a folder with backbone.safetensors): pre-train one first "
                        "(selfsup pretrain --out DIR) or point --runs at its parent")
    try:
        import streamlit  # noqa: F401
    except ImportError as e:
        raise DataError("selfsup serve needs Streamlit: pip install 'selfsup[web]' (or streamlit)") from e
    if max_upload_mb <= 0:
        raise DataError(f"--max-upload-mb {max_upload_mb} must be positive")
    if data_root is not None and not Path(data_root).is_dir():
        raise DataError(f"--data-root {data_root} is not a folder: pass the folder holding your runs' training data")
    cmd, env = serve_command(runs, host, port, max_upload_mb, data_root)
    extra = f", training data under {Path(data_root).resolve()}" if data_root is not None else ""
    print(f"selfsup serve: http://{host}:{port} (runs under {Path(runs).resolve()}{extra}); Ctrl-C stops it",
          flush=True)
    return subprocess.call(cmd, env=env)
