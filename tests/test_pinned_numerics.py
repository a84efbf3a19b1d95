"""The numbers of a short run of each task, pinned (CPU, TensorFlow backend, float64).

The pins in fixtures/pinned_runs.json were written by the harness as it stood before its
redesign (commit c6624df); a change of the harness that changes a curve value, a final
metric or the step count of any task fails here. Regenerate them only for a deliberate
change of the numerics, and say why in the commit:

    python tests/test_pinned_numerics.py --write

Why float64 (Keras' floatx, set through a KERAS_HOME of the test's own): float32 pins held to
the bit only on the kind of CPU that wrote them. On an AVX2 CPU without AVX-512 the float32
losses moved by one ulp (1e-7), and Adam, which divides each gradient by its own scale, turned
that into 0.7 % of PTB's validation BPC within 48 steps. In float64 such rounding differences
are about 1e-16 and stay far below RTOL; a changed batch, step or state changes far more.
"""

import csv
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_helpers import REPO, run_subprocess  # noqa: E402

DATA_DIR = os.environ.get("RUM_TF_DATA_DIR", os.path.join(os.path.dirname(REPO), "shared", "data"))
PINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pinned_runs.json")
TIMES = ("train_time_s", "wall_time_s")  # and every rate ("..._per_s"): clocks, not numerics
RTOL = 1e-7  # float64; integers, names and the structure must be equal


def _numeric(mapping):
    return {k: v for k, v in mapping.items() if k not in TIMES and "per_s" not in k}


# Each run: a task binary, a few evaluations, every kind of model state the harness carries
# (zoneout noise, λ=1 memory, the stateful PTB carry, the kept-best weights, a stop rule).
RUNS = {
    "copying": [
        "--T=5", "--units=8", "--batch_size=8", "--steps=40", "--eval_every=10", "--test_size=16",
        "--lambda_=1", "--eta=2", "--zoneout_keep_h=0.9",
    ],
    "recall": [
        "--T=6", "--units=8", "--batch_size=8", "--steps=40", "--eval_every=10", "--train_size=64",
        "--valid_size=16", "--test_size=16", "--optimizer=adam", "--stop_when=val_accuracy>=0.0:3",
    ],
    "babi": [
        "--babi_set=en", "--task=1", "--units=8", "--embed_size=8", "--steps=20", "--eval_every=10",
        "--eval_batch_size=200", "--data_dir=" + DATA_DIR,
    ],
    "ptb": [
        "--fast_units=8", "--units=8", "--embed_size=8", "--batch_size=4", "--num_steps=10", "--max_chars=1000",
        "--max_eval_chars=500", "--test_batch_size=3", "--epochs=2", "--data_dir=" + DATA_DIR,
    ],
}  # fmt: skip


def numbers(output_dir):
    """What is pinned: the curve without its clocks, and results.json's steps, metrics and task results."""
    with open(os.path.join(output_dir, "curve.csv"), newline="", encoding="utf-8") as f:
        curve = [_numeric(row) for row in csv.DictReader(f)]
    with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as f:
        summary = json.load(f)
    return {
        "curve": curve,
        "steps": summary["steps"],
        "metrics": {part: _numeric(values) for part, values in summary["metrics"].items()},
        "task_results": _numeric(summary.get("task_results", {})),
        "best": summary.get("best"),
        "stopped": summary.get("stopped"),
    }


def run(task, output_dir):
    keras_home = os.path.join(output_dir, "keras_home")
    os.makedirs(keras_home)
    with open(os.path.join(keras_home, "keras.json"), "w", encoding="utf-8") as f:
        json.dump({"floatx": "float64", "backend": "tensorflow"}, f)
    done = run_subprocess(f"tasks.{task}", RUNS[task] + [f"--output_dir={output_dir}"], env={"KERAS_HOME": keras_home})
    assert done.returncode == 0, done.stderr[-3000:]
    return numbers(output_dir)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RUNS))
def test_short_run_matches_its_pin(task, tmp_path):
    if task in ("babi", "ptb") and not os.path.isdir(DATA_DIR):
        pytest.skip(f"no data in {DATA_DIR}")
    with open(PINS, encoding="utf-8") as f:
        pinned = json.load(f)[task]
    got, want = _leaves(run(task, tmp_path)), _leaves(pinned)
    assert sorted(got) == sorted(want)
    differ = {path: (got[path], value) for path, value in want.items() if not _same(got[path], value)}
    assert not differ, differ


def _leaves(tree, path=""):
    """{"curve[0].loss": value, ...}: every value of the nested dicts and lists by its path."""
    if isinstance(tree, dict):
        return {k: v for key in tree for k, v in _leaves(tree[key], f"{path}.{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, item in enumerate(tree) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: tree}


def _same(a, b):
    """Equal, or numbers (curve.csv's are strings) within RTOL of each other."""
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=RTOL)
    except (TypeError, ValueError):
        return False


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    pins = {}
    for name in sorted(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            pins[name] = run(name, tmp)
    with open(PINS, "w", encoding="utf-8") as f:
        json.dump(pins, f, indent=1, sort_keys=True)
        f.write("\n")
