"""A run killed inside an evaluation interval (a PTB epoch) resumes exactly from a checkpoint inside it.

`RunConfig.checkpoint_every` (`callbacks.Bookkeeper`): the killed run must lose at most
`checkpoint_every` steps, not the interval, and end with the uninterrupted run's weights, optimizer,
curve and results, to the bit. A kill is a KeyboardInterrupt raised after a given step (in the task's
callbacks, so that step's own checkpoint is not written: the run loses the steps since the last one).
"""

import json
import os

import h5py
import keras
import numpy as np
import pytest

from rum_tf import RUM, bptt
from rum_tf.data import copying, streams
from rum_tf.data import ptb as ptb_data
from rum_tf.training import checkpoints, loop, results

_TIMES = ("train_time_s", "wall_time_s", "chars_per_s")  # the curve's timings: never equal between runs


class _Session(keras.callbacks.Callback):
    """Records the steps this session trains (the optimizer's count); raises KeyboardInterrupt after `kill_at`."""

    def __init__(self, kill_at=None):
        super().__init__()
        self.kill_at = kill_at
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))
        if self.steps[-1] == self.kill_at:
            raise KeyboardInterrupt(f"killed after step {self.kill_at}")


# ---------------------------------------------------------------------------- tasks

B, T, V = 4, 10, 20  # the PTB-like task: 4 rows, windows of 10 characters, 20 symbols
WINDOWS = 12  # training windows per epoch


def _ptb_like(session):
    """A tiny char-PTB task built as tasks/ptb builds it: the state carried across windows, reset each
    epoch and each evaluation, zoneout (random state), the best validation BPC kept, the learning rate
    dropped from epoch 1 on, characters per second in the curve."""
    ids = np.random.default_rng(0).integers(0, V, B * (WINDOWS * T + 1)).astype(np.int32)
    text = np.resize(ids[:37], len(ids))  # a text that repeats: there is something to learn
    x, y = ptb_data.bptt_batches(text, B, T)
    vx, vy = ptb_data.bptt_batches(np.roll(text, 5)[: B * (3 * T + 1)], B, T)
    assert len(x) == WINDOWS

    def build():
        chars = keras.Input(batch_shape=(B, T), dtype="int32")
        h = keras.layers.Embedding(V, 8, name="embedding")(chars)
        h = bptt.CarryState(
            RUM(8, zoneout_keep_h=0.8, seed=1, return_sequences=True, return_state=True, name="rum"), name="rnn"
        )(h)
        return keras.Model(chars, keras.layers.Dense(V, name="output")(h))

    return loop.Task(
        name="ptb_like",
        build_model=build,
        train_data=lambda step: streams.epoch_stream(x, y, step),
        loss=bptt.SequenceLoss(T),
        metrics=[bptt.bpc_metric()],
        valid_data=lambda: streams.windows_dataset(vx, vy),
        test_data=lambda: streams.windows_dataset(vx, vy),
        keep_best=("val_bpc", "min"),
        callbacks=[bptt.StateResetter(), bptt.lr_drop_schedule(1e-2, 1), bptt.CharsPerSecond(B * T), session],
    )


def _copying_like(session, L=6):
    """Copying memory with a delay of `L` (fresh batches drawn from the step), a RUM with zoneout: no
    carried state, no validation."""
    import tensorflow as tf

    spec = (tf.TensorSpec((B, L + 20), tf.int32),) * 2

    def batch(k):
        return copying.copying_batch(B, L, np.random.default_rng([7, k]))

    def build():
        tokens = keras.Input((L + 20,), dtype="int32")
        h = keras.layers.Embedding(10, 6, name="embedding")(tokens)
        h = RUM(8, zoneout_keep_h=0.8, seed=1, return_sequences=True, name="rnn")(h)
        return keras.Model(tokens, keras.layers.Dense(9, name="output")(h))

    return loop.Task(
        name="copying_like",
        build_model=build,
        train_data=lambda step: streams.generated_batches(batch, step, spec),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        test_data=lambda: streams.fixed_batches(batch(10_000), B),
        callbacks=[session],
    )


def _config(out, task, steps, eval_every, checkpoint_every):
    config = loop.RunConfig(
        task=task,
        output_dir=str(out),
        steps=steps,
        eval_every=eval_every,
        optimizer="adam",
        learning_rate=1e-2,
        clip_norm=1.0,
        flags={"eval_every": eval_every},
        flagfile_text="",
    )
    # Set after construction, so that on a harness without the field this test fails on what the kill
    # lost rather than on a TypeError.
    config.checkpoint_every = checkpoint_every
    return config


# ---------------------------------------------------------------------------- comparisons


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _assert_same_run(whole, resumed):
    """Same results (times aside), curve, last checkpoint (weights, optimizer, carried state, RNG) and final model."""

    def strip(row):
        return {k: v for k, v in row.items() if k not in _TIMES}

    a, b = results.read_results(str(whole)), results.read_results(str(resumed))
    assert a["steps"] == b["steps"] and a.get("best") == b.get("best")
    assert {k: strip(v) for k, v in a["metrics"].items()} == {k: strip(v) for k, v in b["metrics"].items()}
    rows_a, rows_b = (results.read_curve(str(d / results.CURVE_CSV)) for d in (whole, resumed))
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]
    last = checkpoints.checkpoint_path(str(whole / results.CHECKPOINT_DIR), a["steps"])
    last_b = checkpoints.checkpoint_path(str(resumed / results.CHECKPOINT_DIR), b["steps"])
    wa, wb = (
        _h5_arrays(os.path.join(last, checkpoints.WEIGHTS_FILE)),
        _h5_arrays(os.path.join(last_b, checkpoints.WEIGHTS_FILE)),
    )
    assert sorted(wa) == sorted(wb) and any("optimizer" in k for k in wa)
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
    ea, eb = (checkpoints.read_state(p)["extra_variables"] for p in (last, last_b))
    assert [e["value"] for e in ea] == [e["value"] for e in eb]  # the zoneout generator's state
    ma, mb = (keras.saving.load_model(str(d / results.MODEL_FILE)).get_weights() for d in (whole, resumed))
    for x, y in zip(ma, mb):
        np.testing.assert_array_equal(x, y)


def _saved(out):
    return [s for s, _ in checkpoints.list_checkpoints(str(out / results.CHECKPOINT_DIR))]


# ---------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_ptb_run_killed_twice_mid_epoch_resumes_exactly(tmp_path):
    steps, every = 3 * WINDOWS, 5  # checkpoints at windows 5 and 10 of each epoch of 12
    whole = tmp_path / "whole"
    loop.run(_ptb_like(_Session()), _config(whole, "ptb_like", steps, WINDOWS, None))  # no mid-epoch checkpoints

    cut = tmp_path / "cut"
    first = _Session(kill_at=8)
    with pytest.raises(KeyboardInterrupt):
        loop.run(_ptb_like(first), _config(cut, "ptb_like", steps, WINDOWS, every))
    assert first.steps == list(range(1, 9))
    assert _saved(cut) == [5], (
        f"killed at window 8 of epoch 1, the run kept checkpoints {_saved(cut)}: it would redo the epoch from its start"
    )
    state = checkpoints.read_state(checkpoints.checkpoint_path(str(cut / results.CHECKPOINT_DIR), 5))
    assert state["mid_interval"] is True and len(state["metrics_variables"]) == 4  # loss and bpc: total, count

    second = _Session(kill_at=21)  # resumes inside epoch 1, evaluates, is killed at window 9 of epoch 2
    with pytest.raises(KeyboardInterrupt):
        loop.run(_ptb_like(second), _config(cut, "ptb_like", steps, WINDOWS, every))
    assert second.steps == list(range(6, 22)), "the resumed run did not continue from window 5"
    assert _saved(cut) == [17, 12]  # the newest and the best (the only evaluation so far)

    third = _Session()
    loop.run(_ptb_like(third), _config(cut, "ptb_like", steps, WINDOWS, every))
    assert third.steps == list(range(18, steps + 1))
    assert "resuming from step 17" in (cut / results.LOG_FILE).read_text()
    _assert_same_run(whole, cut)
    assert _saved(cut) == sorted({steps, results.read_results(str(cut))["best"]["step"]}, reverse=True)


@pytest.mark.slow
def test_copying_run_killed_mid_interval_resumes_exactly(tmp_path):
    steps, eval_every, every = 30, 10, 4  # 4 does not divide 10: checkpoints at 4, 8, 14, 18, 24, 28
    whole = tmp_path / "whole"
    loop.run(_copying_like(_Session()), _config(whole, "copying_like", steps, eval_every, every))
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        loop.run(_copying_like(_Session(kill_at=17)), _config(cut, "copying_like", steps, eval_every, every))
    assert _saved(cut) == [14], f"killed at step 17 the run kept checkpoints {_saved(cut)}, not the one at 14"
    resumed = _Session()
    loop.run(_copying_like(resumed), _config(cut, "copying_like", steps, eval_every, every))
    assert resumed.steps == list(range(15, steps + 1))
    _assert_same_run(whole, cut)
    rows = results.read_curve(str(cut / results.CURVE_CSV))
    assert [r["step"] for r in rows] == [10, 20, 30]  # curve rows at the evaluations only
    assert rows[-1]["accuracy"] > rows[0]["accuracy"]  # it learns (the blanks, at least)


def test_bad_checkpoint_every_is_one_line(tmp_path):
    with pytest.raises(loop.RunError, match=r"^--checkpoint_every=0 must be >= 1 \(or unset\)$"):
        loop.run(_copying_like(_Session()), _config(tmp_path, "copying_like", 20, 10, 0))


@pytest.mark.slow
def test_mid_interval_checkpoint_needs_the_same_metrics(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        loop.run(_copying_like(_Session(kill_at=6)), _config(tmp_path, "copying_like", 20, 10, 4))
    path = checkpoints.checkpoint_path(str(tmp_path / results.CHECKPOINT_DIR), 4)
    state = checkpoints.read_state(path)
    state["metrics_variables"] = state["metrics_variables"][:2]  # as if the run had fewer metrics
    with open(os.path.join(path, checkpoints.STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(state, f)
    with pytest.raises(ValueError, match="does not match the model's metrics"):
        loop.run(_copying_like(_Session()), _config(tmp_path, "copying_like", 20, 10, 4))
