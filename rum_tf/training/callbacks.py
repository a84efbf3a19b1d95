"""The callbacks Keras lacks: global-step bookkeeping, progress lines and progress.json,
the divergence guard, step checkpoints, the stop rule.

In the harness one Keras "epoch" is one evaluation interval (`eval_every` steps), so
epoch e ends at step (e + 1) * eval_every.
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


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class StepClock(keras.callbacks.Callback):
    """Tracks the global step and the time spent training, across resumed sessions.

    Adds `step`, `train_time_s` (time inside the training batches, all sessions) and
    `wall_time_s` (all sessions, from process start) to each evaluation's logs, so the
    callbacks after it (progress, CSV, checkpoints) see them.

    Args:
      eval_every: steps per Keras epoch.
      train_time_s, wall_time_s: totals of the earlier sessions (0 for a new run).
      session_start: `time.monotonic()` when this session began.
    """

    def __init__(self, eval_every, train_time_s=0.0, wall_time_s=0.0, session_start=None):
        super().__init__()
        self.eval_every = eval_every
        self.train_time_s = float(train_time_s)
        self._earlier_wall_s = float(wall_time_s)
        self._session_start = time.monotonic() if session_start is None else session_start
        self._epoch_start = None
        self.step = None
        self.window_steps_per_s = None

    def wall_time_s(self):
        return self._earlier_wall_s + time.monotonic() - self._session_start

    def _stop_train_timer(self):
        if self._epoch_start is not None:
            elapsed = time.monotonic() - self._epoch_start
            self.train_time_s += elapsed
            self.window_steps_per_s = self.eval_every / elapsed if elapsed > 0 else None
            self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.monotonic()

    def on_test_begin(self, logs=None):
        self._stop_train_timer()  # validation time is not training time

    def on_epoch_end(self, epoch, logs=None):
        self._stop_train_timer()
        self.step = (epoch + 1) * self.eval_every
        if logs is not None:
            logs["step"] = self.step
            logs["train_time_s"] = round(self.train_time_s, 3)
            logs["wall_time_s"] = round(self.wall_time_s(), 3)

    def state(self):
        """What a checkpoint must carry to continue the clocks."""
        return {"train_time_s": self.train_time_s, "wall_time_s": self.wall_time_s()}


class ProgressLogger(keras.callbacks.Callback):
    """One log line per evaluation (and at least every `every_s` seconds in between).

        step 1,000/20,000 (5%) | loss 0.0921 [memoryless baseline 0.0945] accuracy 0.9080
        | val_... | 45.2 steps/s | ETA 7m00s

    Args:
      clock: the run's `StepClock` (placed before this callback).
      total_steps: steps of the whole run.
      references: {metric: {label: value}} shown beside that metric.
      every_s: longest silence during an evaluation interval, in seconds.
    """

    def __init__(self, clock, total_steps, references=None, every_s=60.0):
        super().__init__()
        self.clock = clock
        self.total_steps = total_steps
        self.references = references or {}
        self.every_s = every_s
        self._last_log = time.monotonic()
        self._epoch = 0
        self._epoch_start = None

    def _metrics(self, logs):
        parts = []
        for key, value in logs.items():
            if key in results.BOOKKEEPING:
                continue
            try:
                text = f"{key} {float(value):.4g}"
            except (TypeError, ValueError):
                continue
            for label, ref in self.references.get(key, {}).items():
                text += f" [{label} {ref:.4g}]"
            parts.append(text)
        return " ".join(parts)

    def _eta(self, step, rate):
        if not rate:
            return "?"
        return format_duration((self.total_steps - step) / rate)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_log < self.every_s:
            return
        self._last_log = now
        step = self._epoch * self.clock.eval_every + batch + 1
        rate = (batch + 1) / (now - self._epoch_start) if self._epoch_start else None
        logging.info(
            "step %s/%s | %s (running) | %.3g steps/s | ETA %s",
            f"{step:,}",
            f"{self.total_steps:,}",
            self._metrics(logs or {}),
            rate or 0,
            self._eta(step, rate),
        )

    def on_epoch_end(self, epoch, logs=None):
        self._last_log = time.monotonic()
        step = self.clock.step
        rate = self.clock.window_steps_per_s
        logging.info(
            "step %s/%s (%d%%) | %s | %.3g steps/s | ETA %s",
            f"{step:,}",
            f"{self.total_steps:,}",
            100 * step // self.total_steps,
            self._metrics(logs or {}),
            rate or 0,
            self._eta(step, rate),
        )


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


class DivergenceGuard(keras.callbacks.Callback):
    """Stops the run with `run_folder.Diverged` as soon as training produces NaN or infinity.

    Placed before the `StepClock` and everything that saves (`midinterval`'s saver included).

    Checked after every training batch: the loss in the logs (Keras' running mean over the
    interval, so one non-finite batch loss makes it non-finite). The harness' other batch
    callbacks already make Keras hand these logs over as Python floats, so the check adds no
    device synchronisation. After each interval, before anything logs or saves it: every metric
    of the evaluation and every trainable weight (an update of the interval's last batch shows
    only there). Raising ends `fit` before the logs, the curve or a checkpoint see the values.

    Args:
      clock: the run's `StepClock` (placed before this callback).
    """

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def _diverged(self, what, step):
        raise run_folder.Diverged(
            f"training diverged at step {step:,}: {what} (lower --learning_rate, or set "
            "--clip_norm, and use another --output_dir)",
            step,
            what,
        )

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # The optimizer's count is the global step, also in an interval resumed from its middle.
            self._diverged(
                f"the training loss is {float(loss)}", int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            )

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.clock.eval_every
        bad = {k: v for k, v in metrics_of(logs).items() if not math.isfinite(v)}
        if bad:
            self._diverged(", ".join(f"{k} is {v}" for k, v in bad.items()), step)
        for weight in self.model.trainable_weights:
            if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
                self._diverged(f"the weight {weight.path} is not finite", step)


class ProgressFile(keras.callbacks.Callback):
    """Keeps <folder>/progress.json (`results.write_progress`) up to date: at every evaluation, and
    whenever the harness calls `write` (session start, end, failure).

    Args:
      folder: the run folder.
      task: the task's name.
      steps: the run's --steps.
      clock: the run's `StepClock` (placed before this callback).
      step: the step the session starts from.
    """

    def __init__(self, folder, task, steps, clock, step=0):
        super().__init__()
        self.folder = folder
        self.task = task
        self.steps = steps
        self.clock = clock
        self.step = step
        self.metrics = {}
        self.steps_per_s = None
        self.accepted = False  # the run has taken the folder over (set by the harness)

    def write(self, status, message=None):
        rate = self.steps_per_s
        eta = (self.steps - self.step) / rate if rate and status == "running" else None
        return results.write_progress(
            self.folder,
            task=self.task,
            status=status,
            step=self.step,
            steps=self.steps,
            eta_s=eta,
            steps_per_s=rate,
            metrics=self.metrics,
            message=message,
        )

    def on_epoch_end(self, epoch, logs=None):
        self.step = self.clock.step
        self.metrics = metrics_of(logs)
        self.steps_per_s = self.clock.window_steps_per_s
        self.write("running")


class CurveLogger(keras.callbacks.Callback):
    """Appends one CSV row per evaluation: step, metrics, validation metrics, times.

    Used instead of `keras.callbacks.CSVLogger`, which pads a run without validation
    with "NA" columns for every key (val_step, val_wall_time_s, ...). The columns are
    fixed by the first row a run writes; a resumed run keeps appending to them.
    """

    FIRST = ("step",)
    LAST = ("train_time_s", "wall_time_s")

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.columns = None

    def _order(self, keys):
        metrics = sorted(k for k in keys if k not in self.FIRST + self.LAST and not k.startswith("val_"))
        valid = sorted(k for k in keys if k.startswith("val_"))
        return [k for k in self.FIRST if k in keys] + metrics + valid + [k for k in self.LAST if k in keys]

    def on_train_begin(self, logs=None):
        if os.path.exists(self.path) and os.path.getsize(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                self.columns = next(csv.reader(f), None)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        write_header = self.columns is None
        if write_header:
            self.columns = self._order(logs)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if write_header:
                writer.writerow(self.columns)
            writer.writerow([results.format_cell(logs.get(k)) for k in self.columns])


class Checkpointer(keras.callbacks.Callback):
    """Saves a step checkpoint after every evaluation (see `checkpoints`).

    With `monitor`, also keeps the checkpoint of the best `monitor` value (mode "min"
    or "max") so the run can end on those weights; the best value and step travel in
    the checkpoints, so a resumed run still knows them.

    Args:
      directory: the checkpoints folder.
      clock: the run's `StepClock` (placed before this callback).
      monitor, mode: the value to keep the best of, or None.
      best: {"step", "value"} restored from a checkpoint, or None.
      extra_state: JSON-serialisable fields stored in every checkpoint (e.g. the flags).
      save: False on the non-chief workers of a multi-worker run.
    """

    def __init__(self, directory, clock, monitor=None, mode="min", best=None, extra_state=None, save=True):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = directory
        self.clock = clock
        self.monitor = monitor
        self.mode = mode
        self.best = best
        self.extra_state = dict(extra_state or {})
        self.save = save

    def _improved(self, value):
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def on_epoch_end(self, epoch, logs=None):
        step = self.clock.step
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                raise KeyError(f"cannot keep the best weights: no {self.monitor!r} in the logs {sorted(logs or {})}")
            if self._improved(float(value)):
                self.best = {"step": step, "value": float(value)}
        if not self.save:
            return
        state = dict(self.extra_state, **self.clock.state(), best=self.best)
        keep = [self.best["step"]] if self.best else []
        checkpoints.save(self.model, self.directory, step, state, keep=keep)


_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_STOP_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([^:\s]+)\s*(?::\s*(\S+))?\s*$")


@dataclasses.dataclass(frozen=True)
class StopRule:
    """Ends a run once `metric op threshold` has held at `times` evaluations in a row.

    Written `METRIC OP THRESHOLD[:TIMES]`, e.g. "val_accuracy>=0.99:3" or
    "loss<=0.00945:5"; METRIC is a curve.csv column (loss, accuracy, val_loss, ...),
    OP one of >=, <=, >, <, TIMES 1 when left out.
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

    def met(self, rows):
        """The first {"step", "reason"} at which `rows` (curve rows, in order) meet the rule, or None."""
        streak = []
        for row in rows:
            value = row.get(self.metric)
            streak = streak + [value] if self.holds(value) else []
            if len(streak) >= self.times:
                values = ", ".join(f"{float(v):.4g}" for v in streak[-self.times :])
                return {
                    "step": int(float(row["step"])),
                    "rule": str(self),
                    "reason": f"{self.metric} {self.op} {self.threshold:g} at {self.times} evaluation"
                    f"{'s' if self.times > 1 else ''} in a row ({values})",
                }
        return None


class StopWhen(keras.callbacks.Callback):
    """Stops `fit` once a `StopRule` holds; `stopped` then says where and why.

    Args:
      rule: the `StopRule`.
      clock: the run's `StepClock` (placed before this callback).
      rows: the curve rows of the earlier sessions, so a resumed run keeps its streak.
    """

    def __init__(self, rule, clock, rows=()):
        super().__init__()
        self.rule = rule
        self.clock = clock
        self.rows = [dict(r) for r in rows]
        self.stopped = None

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({**(logs or {}), "step": self.clock.step})
        self.stopped = self.rule.met(self.rows)
        if self.stopped is not None:
            logging.info("stopping at step %s: %s", f"{self.stopped['step']:,}", self.stopped["reason"])
            self.model.stop_training = True
