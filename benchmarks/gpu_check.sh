#!/usr/bin/env bash
# The GPU check on a machine with one NVIDIA GPU, its own PyTorch and no network
# (docs/scaling-up.md, "GPU check").
#
# First, where there is network, in the repository (after `make repro` or `dvc pull`):
#     .venv/bin/python benchmarks/gpu_check.py prepare          # wheels into .cache/gpu_wheels
# and bring the repository with .cache/gpu_wheels, data/mix, data/decontam, data/tokens and
# models/tokenizer to the GPU machine. There, from the repository root:
#     bash benchmarks/gpu_check.sh [gpu_check.py options]      # e.g. --steps 200 --skip fsdp
#
# It installs the project and its dependencies from the wheels alone (pip --no-index), with the
# machine's torch pinned so that nothing replaces it, then runs benchmarks/gpu_check.py, which
# writes reports/gpu_check.json. PYTHON: the interpreter that has the machine's PyTorch (default
# python3); WHEELS: the prepared directory (default .cache/gpu_wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.cache/gpu_wheels}

if [ ! -f "$WHEELS/requirements.txt" ]; then
    echo "gpu_check.sh: $WHEELS/requirements.txt missing: run '.venv/bin/python benchmarks/gpu_check.py prepare'" \
         "where there is network and bring $WHEELS along" >&2
    exit 2
fi
torch_before=$("$PY" -c 'import torch; print(torch.__version__)')
want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python_version"])' "$WHEELS/manifest.json")
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
    echo "gpu_check.sh: the wheels are for Python $want, this is $have: prepare again with --python-version $have" >&2
    exit 2
fi

pin=$(mktemp)
trap 'rm -f "$pin"' EXIT
echo "torch==$torch_before" >"$pin"
offline=("$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --constraint "$pin")
"${offline[@]}" -r "$WHEELS/requirements.txt"
shopt -s nullglob
flash=("$WHEELS"/flash_attn-*.whl)
if ((${#flash[@]})); then
    "${offline[@]}" --no-deps "${flash[@]}"
else
    echo "gpu_check.sh: no flash-attn wheel in $WHEELS: the check skips flash-attn 2 and says why" >&2
fi
"${offline[@]}" --no-deps --no-build-isolation -e .

torch_after=$("$PY" -c 'import torch; print(torch.__version__)')
if [ "$torch_before" != "$torch_after" ]; then
    echo "gpu_check.sh: torch changed from $torch_before to $torch_after during the install" >&2
    exit 1
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py --wheels "$WHEELS" "$@"
