#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py; about 10 minutes on one H100; its table is written to
# $OUT/gpu_check.md where OUT is set, else docs/gpu_check.md):
#
#     bash scripts/gpu_check.sh [--only parity,syncs,views,steps,stream,resume,memory,flash]
#
# Uses .venv where `bash scripts/setup.sh` made one; otherwise the machine's python3 with its own torch and
# selfsup from src/, and the packages that image lacks (kornia, kornia_rs, webdataset, braceexpand) from wheels
# in .whl/ made beforehand on a machine with a package registry:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl kornia==0.9.0 kornia_rs==0.2.0 webdataset braceexpand
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/selfsup-site \
      .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/selfsup-site
  fi
  export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
report=${OUT:-docs}/gpu_check.md
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())"
timeout 560 "$PY" benchmarks/gpu_check.py --out "$report" "$@"
