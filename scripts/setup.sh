#!/usr/bin/env bash
# Sets up selfsup in ./.venv: torch==2.13.0 first (the local CPU wheel; a looser spec would pull GBs of
# CUDA packages), then the package (editable) and, with --dev, the test tools. Installs the Debian package
# dataset-fashion-mnist where apt can (the demo falls back to scikit-learn's digits otherwise) and, with --dev,
# chromium and chromium-driver for the web page's browser test (which skips without them).
# Safe to re-run: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0')" 2>/dev/null \
  || pip_q "torch==2.13.0"
pip_q -e ".${extras}"

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } \
      >/dev/null 2>&1 || echo "notice: could not install dataset-fashion-mnist; the demo will use digits" >&2
  else
    echo "notice: run 'sudo apt-get install dataset-fashion-mnist' for Fashion-MNIST; the demo will use digits" >&2
  fi
fi
if [ -n "$extras" ] && ! { command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; }; then
  # the web page's browser test drives Debian's chromium through selenium; it skips where they are absent
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -qq chromium chromium-driver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; } \
      >/dev/null 2>&1 || echo "notice: could not install chromium; the browser test of the web page will skip" >&2
  else
    echo "notice: 'sudo apt-get install chromium chromium-driver' lets the web page's browser test run" >&2
  fi
fi
echo "selfsup is set up in .venv (activate with: source .venv/bin/activate)" >&2
