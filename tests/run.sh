#!/usr/bin/env bash
# The project's test command (README.md): install the package with its test
# extra, lint and check the formatting with ruff (pyproject.toml), then run the
# whole suite (test_no_tensorflow.py runs tests/no_tensorflow.sh, the binaries in a venv
# without TensorFlow). Data-backed tests read ../shared/data unless RUM_TF_DATA_DIR
# points elsewhere. Arguments go to pytest, e.g. -m "not slow" for a quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[test]"
python -m ruff check .
python -m ruff format --check .
export RUM_TF_DATA_DIR="${RUM_TF_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# One worker per core (-n auto): the suite is mostly separate processes and single-threaded steps.
# Work stealing, because a few tests take minutes: an idle worker takes tests queued on a busy one.
python -m pytest -q -n auto --dist worksteal tests "$@"
