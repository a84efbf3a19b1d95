#!/usr/bin/env bash
# Wheels for the TF-free path on a machine without internet (docs/DEVICE.md): Keras and the pure
# or small packages it imports, for Python 3.12 on manylinux x86_64, into the ignored .whl/.
# NumPy, ml_dtypes and JAX are not among them: the GPU machine's own JAX install brings them.
# matplotlib (the learning-curve PNG) and tensorboard (events) are left out on purpose: the
# binaries skip both with a warning, and they would cost most of the 64 MiB a call may carry.
#   bash tools/device_wheels.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${1:-3.12}"
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  "keras>=3.15,<3.16" namex==0.1.0 optree==0.20.0 absl-py==2.5.1 h5py==3.14.0 rich==15.0.0 \
  markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.20.0 packaging==26.2 typing_extensions==4.15.0
ls -1 .whl
du -sh .whl
