"""python -m tasks.recall: outputs with validation, the model's head, JAX."""

import numpy as np
import pytest

from rum_tf.data import recall as recall_data
from rum_tf.training import results
from tasks import recall
from training_helpers import assert_complete_outputs, run_in_process, run_subprocess

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

TINY = [
    "--T=6",
    "--units=8",
    "--batch_size=8",
    "--steps=20",
    "--eval_every=10",
    "--train_size=40",
    "--valid_size=12",
    "--test_size=20",
]


def test_tiny_run_writes_complete_outputs_with_validation(tmp_path):
    summary = run_in_process(recall, TINY + ["--lambda_=1", "--eta=0.1", f"--output_dir={tmp_path}"])
    assert assert_complete_outputs(str(tmp_path), "recall", with_valid=True) == summary
    assert summary["task_results"] == {"T": 6, "train_size": 40, "valid_size": 12, "test_size": 20}
    rows = results.read_curve(str(tmp_path / results.CURVE_CSV))
    assert all("val_accuracy" in r and "val_loss" in r for r in rows)
    assert "[chance 0.1]" in (tmp_path / results.LOG_FILE).read_text()


def test_model_reads_the_last_state_into_ten_classes():
    x, _ = recall_data.recall_batch(3, 10, 0)
    model = recall.build_model(10, lambda **kw: __import__("keras").layers.GRU(4, **kw))
    assert model.get_layer("one_hot").depth == recall_data.vocab_size(10) == 16
    assert tuple(model(x).shape) == (3, 10)
    assert model.get_layer("rnn").return_sequences is False


def test_training_cycles_through_the_fixed_set_in_order():
    task = recall.make_task(6, 4, 4, (10, 2, 2), 0, None)
    train = recall_data.recall_data(6, 10, 2, 2, seed=0).train
    got = [b[0].numpy() for b in task.train_data(2).take(2)]  # batches 2 and 3: rows 8, 9, 0, 1 / 2..5
    np.testing.assert_array_equal(got[0], train.x[[8, 9, 0, 1]])
    np.testing.assert_array_equal(got[1], train.x[2:6])


@pytest.mark.skipif(pytest.importorskip("keras").backend.backend() == "jax", reason="already under JAX")
def test_runs_under_jax(tmp_path):
    pytest.importorskip("jax")
    result = run_subprocess("tasks.recall", TINY + [f"--output_dir={tmp_path}"], env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = assert_complete_outputs(str(tmp_path), "recall", with_valid=True)
    assert summary["backend"] == "jax"
