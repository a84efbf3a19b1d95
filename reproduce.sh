#!/usr/bin/env bash
# Every paper table from one command; writes <out>/RESULTS.md and exits non-zero if a row
# misses its check.
#   bash reproduce.sh [--quick | --full] [--only copying,recall,babi,ptb] [--data_dir DIR] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"  # TensorFlow's C++ start-up chatter
if ! python -c "import rum_tf, keras, absl, matplotlib" >/dev/null 2>&1; then  # rum_tf imports the backend
  echo "installing rum_tf and its dependencies (pip install -e .)" >&2
  python -m pip install --quiet -e .
fi
exec python -m tasks.reproduce "$@"  # checkout tooling, run from this folder
