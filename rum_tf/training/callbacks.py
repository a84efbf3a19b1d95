"""The run's state (`RunState`, saved with every checkpoint), its stop rule (`StopRule`) and its one Keras
callback (`Bookkeeper`). One Keras "epoch" is one evaluation interval (`eval_every` steps)."""

import contextlib
import csv
import dataclasses
import math
import operator
import os
import re
import time

import keras
import numpy as np
from absl import logging

from rum_tf.training import checkpoints, results, run_folder

MID_INTERVAL = "mid_interval"  # state.json: true for a checkpoint saved inside an interval
METRICS = "metrics_variables"  # state.json: the metric accumulators' values, in `model.metrics_variables` order


def format_duration(seconds):
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def metrics_of(logs):
    """The metric entries of Keras logs (bookkeeping columns left out), as floats."""
    found = {}
    for key, value in (logs or {}).items():
        with contextlib.suppress(TypeError, ValueError):
            if key not in results.BOOKKEEPING:
                found[key] = float(value)
    return found


_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_STOP_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([^:\s]+)\s*(?::\s*(\S+))?\s*$")


@dataclasses.dataclass(frozen=True)
class StopRule:
    """Ends a run once `metric op threshold` has held at `times` evaluations in a row. Written
    `METRIC OP THRESHOLD[:TIMES]` (e.g. "val_accuracy>=0.99:3"; METRIC a curve.csv column, TIMES 1 when left out)."""

    metric: str
    op: str
    threshold: float
    times: int = 1

    @classmethod
    def parse(cls, text):
        """The rule written in `text`; ValueError with one line when it is not one."""
        match = _STOP_RULE.match(text or "")
        if not match:
            raise ValueError(
                f"--stop_when={text!r} is not METRIC OP THRESHOLD[:TIMES] "
                "(e.g. val_accuracy>=0.99:3; OP one of >=, <=, >, <)"
            )
        metric, op, threshold, times = match.groups()
        try:
            threshold = float(threshold)
        except ValueError:
            raise ValueError(f"--stop_when={text!r}: threshold {threshold!r} is not a number") from None
        if not math.isfinite(threshold):
            raise ValueError(f"--stop_when={text!r}: threshold must be finite")
        try:
            times = int(times or 1)
        except ValueError:
            times = 0
        if times < 1:
            raise ValueError(f"--stop_when={text!r}: TIMES must be a whole number >= 1")
        return cls(metric, op, threshold, times)

    def __str__(self):
        return f"{self.metric}{self.op}{self.threshold:g}:{self.times}"

    def holds(self, value):
        try:
            return math.isfinite(value := float(value)) and _COMPARISONS[self.op](value, self.threshold)
        except (TypeError, ValueError):
            return False

    def streak(self, values):
        """The values at the end of `values` (one per evaluation, in order) that hold in a row."""
        held = []
        for value in values:
            held = [*held, value] if self.holds(value) else []
        return held

    def stop(self, step, streak):
        """{"step", "rule", "reason"} when `streak` (values held in a row, the last at `step`) ends the run."""
        if len(streak) < self.times:
            return None
        values = ", ".join(f"{float(v):.4g}" for v in streak[-self.times :])
        evaluations = f"{self.times} evaluation{'s' if self.times > 1 else ''}"
        reason = f"{self.metric} {self.op} {self.threshold:g} at {evaluations} in a row ({values})"
        return {"step": int(step), "rule": str(self), "reason": reason}

    def met(self, rows):
        """The first {"step", "rule", "reason"} at which `rows` (curve rows, in order) meet the rule, or None."""
        held = []
        for row in rows:
            held = self.streak([*held, row.get(self.metric)])
            if stopped := self.stop(float(row["step"]), held):
                return stopped
        return None


@dataclasses.dataclass
class RunState:
    """Where a run is, saved with every checkpoint (state.json) and restored with it."""

    step: int = 0  # training steps done
    train_time_s: float = 0.0  # time inside the training batches, all sessions
    wall_time_s: float = 0.0  # time of the sessions before `session_start` (a restored run's)
    best: dict | None = None  # {"step", "value"} of the best monitored evaluation so far
    session_start: float = dataclasses.field(default_factory=time.monotonic)  # not saved

    @classmethod
    def restored(cls, saved, session_start):
        """The state of a checkpoint's state.json (older run folders wrote the same fields)."""
        clocks = {k: float(saved.get(k, 0.0)) for k in ("train_time_s", "wall_time_s")}
        return cls(int(saved["step"]), best=saved.get("best"), session_start=session_start, **clocks)

    def wall_time_now(self):
        return self.wall_time_s + time.monotonic() - self.session_start

    def saved(self, train_time_s=None):
        """The fields for state.json (the clocks as of now)."""
        train = self.train_time_s if train_time_s is None else train_time_s
        return {"train_time_s": train, "wall_time_s": self.wall_time_now(), "best": self.best}


class Bookkeeper(keras.callbacks.Callback):
    """Everything the harness does around `fit` on one `RunState` (clocks, divergence guard, log, curve.csv, best
    value, stop rule, checkpoints unless `save` is False, progress.json), as the last callback: it sees the task's logs.
    `streak`: the stop rule's values held in a row before this session. Why not Keras' own: docs/ARCHITECTURE.md."""

    def __init__(self, state, config, *, curve_path, checkpoint_dir, progress, references=None, monitor=None,
                 mode="min", stop_rule=None, streak=(), save=True):  # fmt: skip
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.state, self.config = state, config
        self.curve_path, self.checkpoint_dir, self.progress = curve_path, checkpoint_dir, progress
        self.references = references or {}
        self.monitor, self.mode = monitor, mode
        self.stop_rule, self.streak, self.stopped = stop_rule, list(streak), None
        self.save, self.columns = save, None  # columns: curve.csv's, once known
        self._epoch = self._offset = 0  # the interval, and its steps done before this `fit` call
        self._epoch_start = self._last_log = self._interval_train_s = None
        self._resume = None  # (epoch, offset, variable values, metric values) until restored

    def resume_inside(self, model, saved, first_batch):
        """Continue the interval cut at `self.state.step` from `saved`. Evaluating `first_batch` builds the metrics now
        (TensorFlow would in the first step, too late to restore their sums); the variables before it come back then."""
        variables = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
        first_batch = keras.tree.map_structure(np.asarray, first_batch)  # e.g. tf.data's tensors, under JAX
        model.test_on_batch(*keras.utils.unpack_x_y_sample_weight(first_batch))
        epoch, offset = divmod(self.state.step, self.config.eval_every)
        self._resume = (epoch, offset, variables, saved.get(METRICS, []))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._offset = epoch, 0
        self._epoch_start = self._last_log = time.monotonic()
        self._interval_train_s = None
        if self._resume is not None and self._resume[0] == epoch:
            _, self._offset, variables, metrics = self._resume
            self._resume = None
            mismatch = "the mid-interval checkpoint does not match the model's "
            checkpoints.assign(self.model.variables, variables, mismatch + "variables")
            checkpoints.assign(
                self.model.metrics_variables, metrics, mismatch + "metrics (are they compiled in the same order?)"
            )

    def on_test_begin(self, logs=None):
        self._stop_train_clock()  # validation time is not training time

    def on_train_batch_end(self, batch, logs=None):
        done = self._offset + batch + 1  # steps of this interval
        step = self._epoch * self.config.eval_every + done
        if (loss := (logs or {}).get("loss")) is not None and not math.isfinite(float(loss)):
            self._diverged(f"the training loss is {float(loss)}", step)
        now = time.monotonic()
        if now - self._last_log >= self.config.log_every_s:
            self._last_log = now
            self._log(step, logs, (batch + 1) / (now - self._epoch_start), running=True)
        every = self.config.checkpoint_every
        if every and self.save and done % every == 0 and done < self.config.eval_every:
            train_time = self.state.train_time_s + time.monotonic() - self._epoch_start
            metrics = [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in self.model.metrics_variables]
            self._checkpoint(step, self.state.saved(train_time) | {MID_INTERVAL: True, METRICS: metrics})

    def on_epoch_end(self, epoch, logs=None):
        self._stop_train_clock()
        state, logs = self.state, logs if logs is not None else {}
        step = (epoch + 1) * self.config.eval_every
        if bad := {k: v for k, v in metrics_of(logs).items() if not math.isfinite(v)}:
            self._diverged(", ".join(f"{k} is {v}" for k, v in bad.items()), step)
        for weight in self.model.trainable_weights:
            if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
                self._diverged(f"the weight {weight.path} is not finite", step)

        state.step = step
        # The rate of the steps this session trained in the interval (fewer where it resumed inside it).
        rate = (self.config.eval_every - self._offset) / self._interval_train_s if self._interval_train_s else None
        logs.update(step=step, train_time_s=round(state.train_time_s, 3), wall_time_s=round(state.wall_time_now(), 3))
        self._log(step, logs, rate)
        self._append_curve(logs)
        if self.monitor is not None:
            if (value := logs.get(self.monitor)) is None:
                raise KeyError(f"cannot keep the best weights: no {self.monitor!r} in the logs {sorted(logs)}")
            better = operator.lt if self.mode == "min" else operator.gt
            if state.best is None or better(float(value), state.best["value"]):
                state.best = {"step": step, "value": float(value)}
        if self.stop_rule is not None:
            self.streak = self.stop_rule.streak([*self.streak, logs.get(self.stop_rule.metric)])
            self.stopped = self.stop_rule.stop(step, self.streak)
        if self.save:
            self._checkpoint(step, state.saved())
        self.progress.update(step=step, metrics=metrics_of(logs), steps_per_s=rate)
        self.progress.write("running")
        if self.stopped is not None:
            logging.info("stopping at step %s: %s", f"{step:,}", self.stopped["reason"])
            self.model.stop_training = True

    def _stop_train_clock(self):
        if self._interval_train_s is None and self._epoch_start is not None:
            self._interval_train_s = time.monotonic() - self._epoch_start
            self.state.train_time_s += self._interval_train_s

    def _checkpoint(self, step, state):
        keep = [self.state.best["step"]] if self.state.best else []
        checkpoints.save(self.model, self.checkpoint_dir, step, state | {"flags": dict(self.config.flags)}, keep=keep)

    def _diverged(self, what, step):
        advice = "lower --learning_rate, or set --clip_norm, and use another --output_dir"
        raise run_folder.Diverged(f"training diverged at step {step:,}: {what} ({advice})", step, what)

    def _log(self, step, logs, rate, running=False):
        """The line of an evaluation, or with `running` of the interval so far."""
        steps, metrics = self.config.steps, []
        for key, value in metrics_of(logs).items():
            references = "".join(f" [{label} {ref:.4g}]" for label, ref in self.references.get(key, {}).items())
            metrics.append(f"{key} {value:.4g}{references}")
        where = f"step {step:,}/{steps:,}" + ("" if running else f" ({100 * step // steps}%)")
        metrics = " ".join(metrics) + (" (running)" if running else "")
        eta = format_duration((steps - step) / rate) if rate else "?"
        logging.info("%s | %s | %.3g steps/s | ETA %s", where, metrics, rate or 0, eta)

    def _append_curve(self, logs):
        """One curve.csv row. The run's first row fixes the columns; a resumed run appends to them."""
        if self.columns is None and os.path.exists(self.curve_path) and os.path.getsize(self.curve_path):
            with open(self.curve_path, newline="", encoding="utf-8") as f:
                self.columns = next(csv.reader(f), None)
        if header := self.columns is None:
            times = ["train_time_s", "wall_time_s"]
            metrics = sorted((k for k in logs if k not in ("step", *times)), key=lambda k: (k[:4] == "val_", k))
            self.columns = ["step", *metrics, *times]
        with open(self.curve_path, "a", newline="", encoding="utf-8") as f:
            row = [results.format_cell(logs.get(k)) for k in self.columns]
            csv.writer(f).writerows([self.columns, row] if header else [row])
