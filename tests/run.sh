#!/usr/bin/env bash
# The test command: sets up everything the tests need (venv, packages, the test model), then runs pytest.
# Usage: bash tests/run.sh [pytest args...]     e.g. bash tests/run.sh -m "not e2e"
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${QWENDESK_VENV:-.venv}"
CACHE="${QWENDESK_TEST_CACHE:-$HOME/.cache/qwendesk-test}"
export QWENDESK_TEST_CACHE="$CACHE"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# tests/constraints.txt pins torch (which Xinference requires) to the CPU build; a looser spec pulls GBs of CUDA.
python -m pip install -q -c tests/constraints.txt -e ".[tray,test]"
# torchvision arrives via timm built for CUDA torch and breaks transformers beside the CPU torch.
python -m pip uninstall -y -q torchvision 2>/dev/null || true

# llama-cpp-python (the optional `convert` extra, and a reference engine) builds from source: build it once.
if ! python -c "import llama_cpp" 2>/dev/null; then
  mkdir -p "$CACHE/wheels"
  if ! ls "$CACHE"/wheels/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python once (a few minutes)..."
    python -m pip wheel -q --no-deps "llama-cpp-python==0.3.*" -w "$CACHE/wheels"
  fi
  python -m pip install -q "$CACHE"/wheels/llama_cpp_python-*.whl diskcache
fi

python -c "from tests.conftest import fetch_smollm2; print('test model:', fetch_smollm2())"
exec python -m pytest "$@"
