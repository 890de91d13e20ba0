#!/usr/bin/env bash
# The GPU check (issue 14): about 8 minutes on one H200, no network needed.
#
#     bash bench/gpu_wheels.sh      # first, where PyPI is reachable: fills bench/.gpu/
#     bash bench/gpu.sh             # on the GPU machine, from the repo root
#
# With the device tool: command "bash bench/gpu.sh", carry ["bench/.gpu"], timeout_s 560.
# It installs the carried wheels and harness (editable), unpacks the carried HARNESS_HOME
# into /tmp, writes random weights into its SmolLM2 folder, then prints in one run:
# 1. the CUDA-marked tests (`pytest -m cuda`);
# 2. bench/gpu_check.py on a SmolLM2-shaped and a ~1B Llama model (random weights):
#    harness vs lm-eval `hf` on MMLU 0-shot and HellaSwag (ratio, agreement, max |dll|),
#    the scorer's fused forward vs the model's decoder (time, max |dll|), and generation
#    throughput vs one-at-a-time `generate`.
# Every part has its own time limit and says when it was skipped or stopped. Logs land in
# $OUT (the device tool brings them back) or /tmp/gpu-check.
set -u
cd "$(dirname "$0")/.."
T0=$SECONDS
TOTAL=${GPU_CHECK_SECONDS:-470}
PY=${PYTHON:-python3}
CARRY=bench/.gpu
LOGS=${OUT:-/tmp/gpu-check}
mkdir -p "$LOGS"
ERR=$LOGS/stderr.log
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false HARNESS_HOME=/tmp/harness-home \
    HARNESS_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
fail() { echo "gpu.sh: $1"; [ -s "$ERR" ] && tail -n 8 "$ERR"; exit 2; }

echo "== setup"
[ -d "$CARRY/wheels" ] && [ -f "$CARRY/home.tar.gz" ] || fail "no $CARRY: run bench/gpu_wheels.sh where PyPI is reachable and carry $CARRY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$CARRY"/wheels/*.whl 2>>"$ERR" \
    || fail "installing the carried wheels failed"
# Installed (not just on PYTHONPATH) so that harness's entry points (built-in suites, metrics) register.
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile -e . 2>>"$ERR" \
    || fail "installing harness from the working tree failed"
mkdir -p "$HARNESS_HOME" && tar -xzf "$CARRY/home.tar.gz" -C "$HARNESS_HOME" || fail "unpacking $CARRY/home.tar.gz failed"
"$PY" - <<'PYEOF' 2>>"$ERR" || fail "the carried packages do not import with this image's"
from importlib.metadata import version
import datasets, evaluate, lm_eval, pydantic, harness.cli  # noqa: F401
print("versions:", ", ".join(f"{n} {version(n)}" for n in ("torch", "transformers", "peft", "accelerate", "lm_eval",
      "datasets", "pyarrow", "huggingface_hub", "fsspec", "numpy")))
PYEOF
"$PY" bench/gpu_models.py --random-smollm2-asset 2>>"$ERR" \
    || echo "SKIPPED random SmolLM2 weights: tests that load the smollm2-135m asset will fail"
echo "== setup done at $((SECONDS - T0))s"

echo "== pytest -m cuda (limit 130s)"
set -o pipefail
timeout 130 "$PY" -m pytest -q -m cuda -p no:cacheprovider --timeout=120 --continue-on-collection-errors tests \
    2>&1 | tee "$LOGS/pytest-cuda.log" | tail -n 30
rc=$?
case $rc in
    0) note="passed" ;; 5) note="no test is marked cuda" ;; 124) note="STOPPED at 130s" ;; *) note="FAILED" ;;
esac
echo "pytest -m cuda: exit $rc ($note), at $((SECONDS - T0))s"

budget=$((TOTAL - (SECONDS - T0) - 15))
echo "== benchmarks (budget ${budget}s)"
if [ "$budget" -lt 60 ]; then
    echo "SKIPPED benchmarks: ${budget}s left of ${TOTAL}s"
else
    timeout $((budget + 30)) "$PY" bench/gpu_check.py --device cuda --budget-s "$budget" 2>>"$ERR" \
        | tee "$LOGS/gpu-check.log"
    rc=$?
    [ "$rc" = 0 ] || { echo "gpu_check.py: exit $rc; last lines of $ERR:"; tail -n 20 "$ERR"; }
fi
echo "== gpu.sh done in $((SECONDS - T0))s"
