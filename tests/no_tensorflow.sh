#!/usr/bin/env bash
# The task binaries on a machine without TensorFlow: a fresh venv with keras, jax, numpy,
# absl-py and matplotlib only (rum_tf installed with --no-deps), where `import tensorflow`
# must fail; then the copying and recall binaries train a few steps under
# KERAS_BACKEND=jax and must write a finished results.json.
#   bash tests/no_tensorflow.sh [VENV_DIR]   (default: a temporary folder, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
venv="${1:-$work/venv}"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
  python -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "keras>=3.15,<3.16" jax numpy absl-py matplotlib
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
if "$venv/bin/python" -c "import tensorflow" >/dev/null 2>&1; then
  echo "no_tensorflow.sh: tensorflow is importable in $venv; this check needs a venv without it" >&2
  exit 1
fi

run() {  # run <task> <flags...>: train into $work/<task>, then check its results.json
  local task="$1"
  shift
  KERAS_BACKEND=jax "$venv/bin/python" -m "tasks.$task" --output_dir="$work/$task" "$@" >"$work/$task.log" 2>&1 || {
    echo "no_tensorflow.sh: tasks.$task failed without TensorFlow:" >&2
    tail -n 20 "$work/$task.log" >&2
    exit 1
  }
  "$venv/bin/python" - "$work/$task/results.json" "$task" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    r = json.load(f)
assert r["status"] == "finished" and r["backend"] == "jax" and r["task"] == sys.argv[2], r
assert "tensorflow" not in r["versions"] and r["metrics"]["test"], r
print(f"no TensorFlow: tasks.{r['task']} under {r['backend']}, {r['steps']} steps, test {r['metrics']['test']}")
EOF
}

run copying --T=5 --units=8 --batch_size=8 --steps=4 --eval_every=2 --test_size=16
run recall --T=6 --units=8 --batch_size=8 --steps=4 --eval_every=2 --train_size=40 --valid_size=12 --test_size=20
