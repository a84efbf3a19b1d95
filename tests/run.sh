#!/usr/bin/env bash
# The project's test command (README.md): install the package with its test
# extra, lint and check the formatting with ruff (pyproject.toml), then run the
# whole suite. Data-backed tests read ../shared/data unless RUM_TF_DATA_DIR
# points elsewhere. Arguments go to pytest, e.g. -m "not slow" for a quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[test]"
python -m ruff check .
python -m ruff format --check .
export RUM_TF_DATA_DIR="${RUM_TF_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# One worker per core (-n auto): the suite is mostly separate processes and single-threaded steps.
python -m pytest -q -n auto tests "$@"
# The binaries on a machine without TensorFlow (a fresh venv; about two minutes with pip's cache).
bash tests/no_tensorflow.sh
