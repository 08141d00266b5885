#!/usr/bin/env bash
# Prepare, once, what the GPU machine lacks for the paper run: pure-Python wheels in .whl/
# (ignored by git), carried with the device tool's `carry: [".whl"]`.
#
# The GPU machine (Python 3.12) has torch, numba, numba-cuda, h5py, pandas, pyarrow, seaborn,
# scipy, scikit-learn, jinja2 and tqdm, but not monai (the 3D U-Net) or this project; the project
# travels as the working tree and runs from its root (`python3 -m benchmark ...`). dask is only
# needed for a Dask-scheduled dataset build, which the paper run does not use.
set -euo pipefail
cd "$(dirname "$0")/.."
MONAI_VERSION="${MONAI_VERSION:-$(python3 -c 'import importlib.metadata as m; print(m.version("monai"))' 2>/dev/null || echo 1.5.1)}"
mkdir -p .whl
rm -f .whl/monai-*.whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "monai==${MONAI_VERSION}"
ls -l .whl
du -sh .whl
