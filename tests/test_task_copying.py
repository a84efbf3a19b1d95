"""python -m tasks.copying: outputs, learning, resume after SIGKILL, mirrored, JAX."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rum_tf.data import copying as copying_data
from rum_tf.training import results
from tasks import copying
from training_helpers import REPO, assert_complete_outputs, read_json, run_in_process, run_subprocess

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

TINY = ["--T=5", "--units=8", "--batch_size=8", "--steps=20", "--eval_every=10", "--test_size=16"]


def test_tiny_run_writes_complete_outputs(tmp_path):
    summary = run_in_process(copying, TINY + ["--lambda_=1", "--eta=2", f"--output_dir={tmp_path}"])
    assert assert_complete_outputs(str(tmp_path), "copying") == summary
    baseline = copying_data.memoryless_baseline(5)
    assert summary["task_results"] == {"T": 5, "memoryless_baseline": baseline, "memoryless_accuracy": 16.25 / 25}
    assert summary["flags"]["lambda_"] == 1 and summary["flags"]["eta"] == 2.0
    assert f"memoryless baseline {baseline:.4g}" in (tmp_path / results.LOG_FILE).read_text()


def test_rum_beats_the_memoryless_baseline_within_dozens_of_steps(tmp_path):
    # A model without memory cannot beat 10 ln 8 / (T+20): at best it guesses the 10 symbols
    # uniformly (exactly the baseline); RUM gets to about 0.82 of it in 100 steps.
    summary = run_in_process(
        copying,
        [
            "--T=5",
            "--units=64",
            "--batch_size=64",
            "--optimizer=adam",
            "--learning_rate=0.01",
            "--steps=100",
            "--eval_every=50",
            "--test_size=1000",
            f"--output_dir={tmp_path}",
        ],
    )
    baseline = copying_data.memoryless_baseline(5)
    assert summary["metrics"]["test"]["loss"] < 0.9 * baseline, (summary["metrics"], baseline)


def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(tmp_path):
    args = [
        "--T=5",
        "--units=8",
        "--batch_size=8",
        "--steps=200",
        "--eval_every=10",
        "--test_size=32",
        "--zoneout_keep_h=0.9",
        "--learning_rate=0.01",
    ]
    whole = run_in_process(copying, args + [f"--output_dir={tmp_path / 'whole'}"])

    cut = tmp_path / "cut"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.copying"] + args + [f"--output_dir={cut}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (cut / "checkpoints" / "step-00000030").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / results.RESULTS_FILE).exists()

    result = run_subprocess("tasks.copying", args + [f"--output_dir={cut}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from step" in result.stderr
    resumed = read_json(cut / results.RESULTS_FILE)
    assert resumed["metrics"] == whole["metrics"]
    assert results.read_curve(str(cut / results.CURVE_CSV))[-1]["loss"] == whole["metrics"]["train"]["loss"]


@pytest.mark.skipif(pytest.importorskip("keras").backend.backend() != "tensorflow", reason="tf.distribute")
@pytest.mark.parametrize("model_flags", [[], ["--lambda_=1", "--eta=0.1"]])  # λ=1: the reversible pass
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, model_flags):
    prelude = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)"
    )
    result = run_subprocess(
        "tasks.copying",
        TINY + model_flags + ["--strategy=mirrored", "--zoneout_keep_h=0.9", f"--output_dir={tmp_path}"],
        prelude=prelude,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = assert_complete_outputs(str(tmp_path), "copying")
    assert summary["replicas"] == 2 and summary["strategy"] == "mirrored"


@pytest.mark.skipif(pytest.importorskip("keras").backend.backend() == "jax", reason="already under JAX")
def test_runs_under_jax(tmp_path):
    pytest.importorskip("jax")
    result = run_subprocess(
        "tasks.copying", TINY + ["--zoneout_keep_h=0.9", f"--output_dir={tmp_path}"], env={"KERAS_BACKEND": "jax"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = assert_complete_outputs(str(tmp_path), "copying")
    assert summary["backend"] == "jax" and summary["jit_compile"] is True
    refused = run_subprocess(
        "tasks.copying", TINY + ["--strategy=mirrored", f"--output_dir={tmp_path}/x"], env={"KERAS_BACKEND": "jax"}
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith("needs KERAS_BACKEND=tensorflow (this run uses jax); use --strategy=default")
    )
