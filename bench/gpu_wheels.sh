#!/usr/bin/env bash
# Gather what bench/gpu.sh needs on the GPU machine into bench/.gpu/ (git-ignored).
# Run HERE, where PyPI is reachable, after `make setup`:
#
#     bash bench/gpu_wheels.sh
#
# - bench/.gpu/wheels/: the packages the GPU image lacks (it has torch, transformers, peft,
#   accelerate, sacrebleu, pandas, scipy, pyarrow, xxhash, ...), for CPython 3.12 on
#   manylinux x86-64, at the versions this project's venv runs, without their dependencies.
# - bench/.gpu/home.tar.gz: a HARNESS_HOME with the MMLU, HellaSwag and SQuAD mirrors and
#   SmolLM2's config and tokenizer. Not its weights: 540 MB in fp32 (98 MB as GGUF) is over
#   the 64 MiB that travels with the working tree, so the check builds random weights there.
# The device run then names bench/.gpu in `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
HOME_DIR=${HARNESS_HOME:-$HOME/.cache/harness}
DEST=bench/.gpu
# Missing from the GPU image and imported on the check's paths (lm-eval's hf backend and
# tasks, harness's models, metrics and leak scan, the CUDA-marked tests).
NAMES="lm_eval datasets evaluate dill multiprocess pytz chardet pydantic pydantic_core annotated-types
typing-inspection rouge-score nltk datasketch gguf"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64"

git check-ignore -q "$DEST" || echo "/$DEST/" >> "$(git rev-parse --git-path info/exclude)"
rm -rf "$DEST" && mkdir -p "$DEST/wheels"
for name in $NAMES; do
    ver=$("$PY" -c "from importlib.metadata import version; print(version('$name'))")
    # shellcheck disable=SC2086
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            $PLATFORMS -d "$DEST/wheels" "$name==$ver" 2>/dev/null; then
        # Some (rouge-score) publish only an sdist: build a wheel of it here (pure Python).
        "$PY" -m pip wheel -q --no-deps -w "$DEST/wheels" "$name==$ver"
    fi
done
tar -czf "$DEST/home.tar.gz" -C "$HOME_DIR" --exclude='*.safetensors' \
    assets/mmlu assets/hellaswag assets/squad assets/smollm2-135m
ls -l "$DEST/wheels" | awk 'NR > 1 {print "  " $NF, int($5 / 1024) " KiB"}'
size=$(du -sm "$DEST" | cut -f1)
echo "$DEST: ${size} MiB (the working tree and carried paths must stay under 64 MiB together)"
[ "$size" -lt 56 ] || { echo "too large to carry"; exit 1; }
