"""The run's state (`RunState`, saved with every checkpoint), its stop rule (`StopRule`) and its one
Keras callback (`Bookkeeper`).

One Keras "epoch" is one evaluation interval (`eval_every` steps). The task's own callbacks come
before `Bookkeeper`, so it sees their logs. Why Keras' CSVLogger, TerminateOnNaN, EarlyStopping and
BackupAndRestore do not stand in: docs/ARCHITECTURE.md, "Keras' own pieces".
"""

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
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def metrics_of(logs):
    """The metric entries of Keras logs (bookkeeping columns left out), as floats."""
    found = {}
    for key, value in (logs or {}).items():
        if key in results.BOOKKEEPING:
            continue
        try:
            found[key] = float(value)
        except (TypeError, ValueError):
            pass
    return found


_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_STOP_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([^:\s]+)\s*(?::\s*(\S+))?\s*$")


@dataclasses.dataclass(frozen=True)
class StopRule:
    """Ends a run once `metric op threshold` has held at `times` evaluations in a row.

    Written `METRIC OP THRESHOLD[:TIMES]`, e.g. "val_accuracy>=0.99:3" or
    "loss<=0.00945:5"; METRIC is a curve.csv column (loss, accuracy, val_loss, ...),
    OP one of >=, <=, >, <, TIMES 1 when left out. Parsed once, with the flags.
    """

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
            times = int(times) if times is not None else 1
        except ValueError:
            times = 0
        if times < 1:
            raise ValueError(f"--stop_when={text!r}: TIMES must be a whole number >= 1")
        return cls(metric, op, threshold, times)

    def __str__(self):
        return f"{self.metric}{self.op}{self.threshold:g}:{self.times}"

    def holds(self, value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
        return math.isfinite(value) and _COMPARISONS[self.op](value, self.threshold)

    def streak(self, values):
        """The values at the end of `values` (one per evaluation, in order) that hold in a row."""
        held = []
        for value in values:
            held = held + [value] if self.holds(value) else []
        return held

    def stop(self, step, streak):
        """{"step", "rule", "reason"} when `streak` (values held in a row, the last at `step`) ends the run."""
        if len(streak) < self.times:
            return None
        values = ", ".join(f"{float(v):.4g}" for v in streak[-self.times :])
        return {
            "step": int(step),
            "rule": str(self),
            "reason": f"{self.metric} {self.op} {self.threshold:g} at {self.times} evaluation"
            f"{'s' if self.times > 1 else ''} in a row ({values})",
        }

    def met(self, rows):
        """The first {"step", "rule", "reason"} at which `rows` (curve rows, in order) meet the rule, or None."""
        held = []
        for row in rows:
            held = self.streak(held + [row.get(self.metric)])
            if (stopped := self.stop(float(row["step"]), held)) is not None:
                return stopped
        return None


@dataclasses.dataclass
class RunState:
    """Where a run is, saved with every checkpoint (state.json) and restored with it.

    Attributes:
      step: training steps done.
      train_time_s: time inside the training batches, all sessions.
      wall_time_s: time of all sessions until `session_start` (a restored run's earlier sessions).
      best: {"step", "value"} of the best monitored evaluation so far, or None.
      session_start: `time.monotonic()` when this session began (not saved).
    """

    step: int = 0
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    best: dict | None = None
    session_start: float = dataclasses.field(default_factory=time.monotonic)

    @classmethod
    def restored(cls, saved, session_start):
        """The state of a checkpoint's state.json (older run folders wrote the same fields)."""
        return cls(
            step=int(saved["step"]),
            train_time_s=float(saved.get("train_time_s", 0.0)),
            wall_time_s=float(saved.get("wall_time_s", 0.0)),
            best=saved.get("best"),
            session_start=session_start,
        )

    def wall_time_now(self):
        return self.wall_time_s + time.monotonic() - self.session_start

    def saved(self, train_time_s=None):
        """The fields for state.json (the clocks as of now)."""
        train = self.train_time_s if train_time_s is None else train_time_s
        return {"train_time_s": train, "wall_time_s": self.wall_time_now(), "best": self.best}


class Bookkeeper(keras.callbacks.Callback):
    """Everything the harness does around `fit`, on one `RunState`.

    At each evaluation: the clocks; the divergence guard (every metric and weight finite, else
    `run_folder.Diverged` before anything logs or saves them); the log line; the curve.csv row; the
    best value; the stop rule; the checkpoint; progress.json. After each batch: the guard on the
    running loss, a log line every `log_every_s`, and with `checkpoint_every` a mid-interval
    checkpoint (with the metric accumulators, so the interval's row comes out as if uninterrupted).

    Args:
      state: the run's `RunState` (updated in place).
      config: the `loop.RunConfig`.
      curve_path, checkpoint_dir: where curve.csv and the checkpoints go.
      progress: the run's `results.Progress`.
      references: {metric: {label: value}} shown beside a metric in the log.
      monitor, mode: the value to keep the best of ("min" or "max"), or None.
      stop_rule: a `StopRule`, or None; `streak`: its values held in a row before this session.
      save: False on the non-chief workers of a multi-worker run.
    """

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
        self.save = save
        self.columns = None
        self._epoch = self._offset = 0  # the interval, and its steps done before this `fit` call
        self._epoch_start = self._last_log = None
        self._interval_train_s = None
        self._resume = None  # (epoch, offset, variable values, metric values) until restored

    # ------------------------------------------------------------------ resuming inside an interval

    def resume_inside(self, model, saved, first_batch):
        """Prepare to continue the interval interrupted at `self.state.step` from `saved` (its state.json).

        `first_batch` (the stream's batch at that step) builds the compiled metrics, which TensorFlow
        otherwise creates only inside the first training step, too late to restore their sums; the
        model's variables are taken before that evaluation and put back at the interval's start.
        """
        variables = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
        first_batch = keras.tree.map_structure(np.asarray, first_batch)  # e.g. tf.data's tensors, under JAX
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(first_batch)
        model.test_on_batch(x, y, sample_weight)
        epoch, offset = divmod(self.state.step, self.config.eval_every)
        self._resume = (epoch, offset, variables, saved.get(METRICS, []))

    # ------------------------------------------------------------------ Keras hooks

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._offset = epoch, 0
        self._epoch_start = self._last_log = time.monotonic()
        self._interval_train_s = None
        if self._resume is not None and self._resume[0] == epoch:
            _, self._offset, variables, metrics = self._resume
            self._resume = None
            _assign(self.model.variables, variables, "variables")
            _assign(self.model.metrics_variables, metrics, "metrics (are they compiled in the same order?)")

    def on_test_begin(self, logs=None):
        self._stop_train_clock()  # validation time is not training time

    def on_train_batch_end(self, batch, logs=None):
        done = self._offset + batch + 1  # steps of this interval
        step = self._epoch * self.config.eval_every + done
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._diverged(f"the training loss is {float(loss)}", step)
        now = time.monotonic()
        if now - self._last_log >= self.config.log_every_s:
            self._last_log = now
            rate = (batch + 1) / (now - self._epoch_start)
            logging.info(
                "step %s/%s | %s (running) | %.3g steps/s | ETA %s",
                f"{step:,}",
                f"{self.config.steps:,}",
                self._metrics_text(logs),
                rate,
                self._eta(step, rate),
            )
        every = self.config.checkpoint_every
        if every and self.save and done % every == 0 and done < self.config.eval_every:
            train_time = self.state.train_time_s + time.monotonic() - self._epoch_start
            extra = {MID_INTERVAL: True, METRICS: _values(self.model.metrics_variables)}
            self._checkpoint(step, self.state.saved(train_time) | extra)

    def on_epoch_end(self, epoch, logs=None):
        self._stop_train_clock()
        eval_every = self.config.eval_every
        step = (epoch + 1) * eval_every
        bad = {k: v for k, v in metrics_of(logs).items() if not math.isfinite(v)}
        if bad:
            self._diverged(", ".join(f"{k} is {v}" for k, v in bad.items()), step)
        for weight in self.model.trainable_weights:
            if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
                self._diverged(f"the weight {weight.path} is not finite", step)

        state = self.state
        state.step = step
        elapsed = self._interval_train_s
        # The rate of the steps this session trained in the interval (fewer where it resumed inside it).
        rate = (eval_every - self._offset) / elapsed if elapsed else None
        if logs is not None:
            logs.update(
                step=step, train_time_s=round(state.train_time_s, 3), wall_time_s=round(state.wall_time_now(), 3)
            )
        logging.info(
            "step %s/%s (%d%%) | %s | %.3g steps/s | ETA %s",
            f"{step:,}",
            f"{self.config.steps:,}",
            100 * step // self.config.steps,
            self._metrics_text(logs),
            rate or 0,
            self._eta(step, rate),
        )
        self._append_curve(logs or {})
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                raise KeyError(f"cannot keep the best weights: no {self.monitor!r} in the logs {sorted(logs or {})}")
            best = state.best
            if best is None or (float(value) < best["value"] if self.mode == "min" else float(value) > best["value"]):
                state.best = {"step": step, "value": float(value)}
        if self.stop_rule is not None:
            self.streak = self.stop_rule.streak([*self.streak, (logs or {}).get(self.stop_rule.metric)])
            self.stopped = self.stop_rule.stop(step, self.streak)
        if self.save:
            self._checkpoint(step, state.saved())
        self.progress.update(step=step, metrics=metrics_of(logs), steps_per_s=rate)
        self.progress.write("running")
        if self.stopped is not None:
            logging.info("stopping at step %s: %s", f"{step:,}", self.stopped["reason"])
            self.model.stop_training = True

    # ------------------------------------------------------------------ helpers

    def _stop_train_clock(self):
        if self._interval_train_s is None and self._epoch_start is not None:
            self._interval_train_s = time.monotonic() - self._epoch_start
            self.state.train_time_s += self._interval_train_s

    def _checkpoint(self, step, state):
        saved = dict(state, flags=dict(self.config.flags))
        best = self.state.best
        checkpoints.save(self.model, self.checkpoint_dir, step, saved, keep=[best["step"]] if best else [])

    def _diverged(self, what, step):
        raise run_folder.Diverged(
            f"training diverged at step {step:,}: {what} (lower --learning_rate, or set "
            "--clip_norm, and use another --output_dir)",
            step,
            what,
        )

    def _metrics_text(self, logs):
        parts = []
        for key, value in metrics_of(logs).items():
            text = f"{key} {value:.4g}"
            for label, ref in self.references.get(key, {}).items():
                text += f" [{label} {ref:.4g}]"
            parts.append(text)
        return " ".join(parts)

    def _eta(self, step, rate):
        return format_duration((self.config.steps - step) / rate) if rate else "?"

    def _append_curve(self, logs):
        """One curve.csv row: step, metrics, validation metrics, times. The columns are fixed by the
        first row of the run; a resumed run appends to them."""
        if self.columns is None and os.path.exists(self.curve_path) and os.path.getsize(self.curve_path):
            with open(self.curve_path, newline="", encoding="utf-8") as f:
                self.columns = next(csv.reader(f), None)
        header = self.columns is None
        if header:
            keys = list(logs)
            metrics = sorted(k for k in keys if k not in ("step", "train_time_s", "wall_time_s") and k[:4] != "val_")
            self.columns = [
                "step",
                *metrics,
                *sorted(k for k in keys if k[:4] == "val_"),
                "train_time_s",
                "wall_time_s",
            ]
        with open(self.curve_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(self.columns)
            writer.writerow([results.format_cell(logs.get(k)) for k in self.columns])


def _values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in variables]


def _assign(variables, values, what):
    values = [np.asarray(v) for v in values]
    if [tuple(v.shape) for v in variables] != [v.shape for v in values]:
        raise ValueError(f"the mid-interval checkpoint does not match the model's {what}")
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))
