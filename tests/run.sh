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
# x86-64 gets a portable AVX2 build, never -march=native: on AMX CPUs (Xeon Sapphire Rapids and newer) a native
# build turns on ggml's AMX matmul, whose tile config GCC <= 12 miscompiles (_tile_loadconfig's asm says it reads
# 8 bytes, so the row/column stores are dropped): every quantized model then segfaults on its first prompt.
# AVX2 is also what xllamacpp's wheel runs, and the flags are explicit because SOURCE_DATE_EPOCH turns ggml's
# defaults off. The cache folder and the venv stamp carry version+flags, so no wheel built otherwise is reused;
# --no-cache-dir because pip's own wheel cache ignores CMAKE_ARGS.
LLAMA_CPP_VERSION=0.3.36
case "$(uname -m)" in
  x86_64 | amd64)
    LLAMA_CPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON"
    LLAMA_CPP_CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS -DGGML_F16C=ON -DGGML_BMI2=ON" ;;
  *) LLAMA_CPP_CMAKE_ARGS="" ;;
esac
LLAMA_CPP_KEY="$LLAMA_CPP_VERSION-$(printf '%s' "$LLAMA_CPP_CMAKE_ARGS" | cksum | cut -d' ' -f1)"
LLAMA_CPP_WHEELS="$CACHE/wheels/llama-cpp-python-$LLAMA_CPP_KEY"
LLAMA_CPP_STAMP="$VENV/llama-cpp-python.build"
if [ "$(cat "$LLAMA_CPP_STAMP" 2>/dev/null)" != "$LLAMA_CPP_KEY" ]; then
  if ! ls "$LLAMA_CPP_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION once (a few minutes)..."
    CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" python -m pip wheel -q --no-deps --no-cache-dir \
      "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$LLAMA_CPP_WHEELS"
  fi
  python -m pip install -q --force-reinstall --no-deps "$LLAMA_CPP_WHEELS"/llama_cpp_python-*.whl
  python -m pip install -q "$LLAMA_CPP_WHEELS"/llama_cpp_python-*.whl diskcache
  printf '%s\n' "$LLAMA_CPP_KEY" >"$LLAMA_CPP_STAMP"
fi

python -c "from tests.conftest import fetch_smollm2; print('test model:', fetch_smollm2())"
exec python -m pytest "$@"
