"""Checkpoints inside an evaluation interval (`RunConfig.checkpoint_every`), and the exact resume from one.

The harness evaluates and checkpoints once per Keras epoch of `eval_every` steps; in PTB
that is a whole pass over the text (about 95 CPU-minutes at full size), all lost to a
kill. With `checkpoint_every=N`, `IntervalCheckpointer` also saves after every N steps of
an interval (counted from the interval's start; N need not divide `eval_every`), marked
`"mid_interval": true` in its state.json. Such a checkpoint holds, beyond the usual
weights, optimizer, random-generator state and clocks, the running sums of the training
metrics (Keras' metric accumulators, which `save_weights` leaves out), so the interval's
curve.csv row comes out as if nothing had happened. Validation, the best value and the
curve rows stay at evaluations; pruning keeps the newest checkpoint and the best.

`fit` replaces the harness' one `model.fit` call. From a mid-interval checkpoint at step
s of interval e it runs a first `fit` that finishes interval e (s mod `eval_every` steps
fewer, reading the stream from s), then the usual `fit` for the intervals after it. At
the start of that first interval every callback runs `on_epoch_begin` as usual (the
learning-rate schedule sets the rate of epoch e), then the model's variables (weights,
the carried PTB state that `bptt.StateResetter` has just reset, the random generators)
and the metric accumulators are put back to the checkpoint's values.
"""

import time

import keras
import numpy as np

from rum_tf.training import checkpoints

MID_INTERVAL = "mid_interval"  # state.json: true for a checkpoint saved inside an interval
METRICS = "metrics_variables"  # state.json: the metric accumulators' values, in `model.metrics_variables` order


def is_mid_interval(state):
    """Whether a checkpoint's state dict is one saved inside an evaluation interval."""
    return bool(state.get(MID_INTERVAL))


def _values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in variables]


def _assign(variables, values, what):
    values = [np.asarray(v) for v in values]
    if [tuple(v.shape) for v in variables] != [v.shape for v in values]:
        raise ValueError(f"the mid-interval checkpoint does not match the model's {what}")
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))


class IntervalCheckpointer(keras.callbacks.Callback):
    """Saves a checkpoint every `every` steps inside each evaluation interval; restores one.

    Placed after the task's callbacks and the `StepClock`, so that on resuming it runs
    after every `on_epoch_begin` that resets state (e.g. `bptt.StateResetter`), and can
    correct the clock's rate of the resumed interval before the progress line shows it.

    Args:
      directory: the checkpoints folder.
      every: steps between two checkpoints inside an interval, or None (never).
      eval_every: steps per interval (Keras epoch).
      clock: the run's `callbacks.StepClock`.
      checkpointer: the run's `callbacks.Checkpointer` (its best value and extra state
        go into these checkpoints too; nothing is saved where it does not save).
    """

    def __init__(self, directory, every, eval_every, clock, checkpointer):
        super().__init__()
        self.directory = directory
        self.every = every
        self.eval_every = eval_every
        self.clock = clock
        self.checkpointer = checkpointer
        self._epoch = 0
        self._offset = 0  # steps of the current interval done before this `fit` call
        self._epoch_start = None
        self._resume = None  # (epoch, offset, variable values, metric values) until restored

    def resume_from(self, model, step, state, first_batch):
        """Prepare to continue the interval interrupted at `step` with `state` (a checkpoint's).

        `first_batch` (the stream's batch at `step`) builds the compiled metrics, which
        TensorFlow otherwise creates only inside the first training step, too late to
        restore their sums; the model's variables are taken before that evaluation.
        """
        variables = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
        first_batch = keras.tree.map_structure(np.asarray, first_batch)  # e.g. tf.data's tensors, under JAX
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(first_batch)
        model.test_on_batch(x, y, sample_weight)
        self._resume = (step // self.eval_every, step % self.eval_every, variables, state.get(METRICS, []))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._offset = epoch, 0
        self._epoch_start = time.monotonic()
        if self._resume is not None and self._resume[0] == epoch:
            _, self._offset, variables, metrics = self._resume
            self._resume = None
            model = self.model
            _assign(model.variables, variables, "variables")
            _assign(model.metrics_variables, metrics, "metrics (are they compiled in the same order?)")

    def on_epoch_end(self, epoch, logs=None):
        if self._offset and self.clock.window_steps_per_s:  # the clock timed only the interval's last steps
            self.clock.window_steps_per_s *= (self.eval_every - self._offset) / self.eval_every

    def on_train_batch_end(self, batch, logs=None):
        done = self._offset + batch + 1  # steps of this interval
        if not self.every or done % self.every or done >= self.eval_every or not self.checkpointer.save:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            return  # never a checkpoint to resume into NaN
        model = self.model
        train_time = self.clock.train_time_s + time.monotonic() - self._epoch_start
        state = dict(
            self.checkpointer.extra_state,
            train_time_s=train_time,
            wall_time_s=self.clock.wall_time_s(),
            best=self.checkpointer.best,
            **{MID_INTERVAL: True, METRICS: _values(model.metrics_variables)},
        )
        best = self.checkpointer.best
        checkpoints.save(
            model, self.directory, self._epoch * self.eval_every + done, state, keep=[best["step"]] if best else []
        )


def fit(
    model,
    train_data,
    *,
    step,
    steps,
    eval_every,
    checkpoint_every,
    state,
    directory,
    clock,
    checkpointer,
    callbacks,
    **fit_kwargs,
):
    """Train from `step` to `steps` in Keras epochs of `eval_every` steps, resuming inside one if need be.

    Args:
      model: the compiled model, restored from the checkpoint of `step` (if any).
      train_data: start_step -> the training stream (`loop.Task.train_data`).
      step, steps: the first and the last step.
      eval_every: steps per evaluation interval.
      checkpoint_every: steps between checkpoints inside an interval, or None.
      state: the restored checkpoint's state dict ({} for a new run).
      directory, clock, checkpointer: the checkpoints folder, the run's `StepClock`
        and `Checkpointer` (see `IntervalCheckpointer`).
      callbacks: the run's callbacks (including `clock`).
      **fit_kwargs: the rest of `model.fit`'s arguments (validation_data, verbose, ...).
    """
    epoch, done = divmod(step, eval_every)
    callbacks = list(callbacks)
    if checkpoint_every or done:
        saver = IntervalCheckpointer(directory, checkpoint_every, eval_every, clock, checkpointer)
        callbacks.insert(callbacks.index(clock) + 1, saver)
    if done:
        saver.resume_from(model, step, state, next(iter(train_data(step))))
        model.fit(
            train_data(step),
            epochs=epoch + 1,
            initial_epoch=epoch,
            steps_per_epoch=eval_every - done,
            callbacks=callbacks,
            **fit_kwargs,
        )
        step = (epoch + 1) * eval_every
        if model.stop_training or step >= steps:
            return
    model.fit(
        train_data(step),
        epochs=steps // eval_every,
        initial_epoch=step // eval_every,
        steps_per_epoch=eval_every,
        callbacks=callbacks,
        **fit_kwargs,
    )
