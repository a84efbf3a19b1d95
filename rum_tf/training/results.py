"""What a run leaves in its --output_dir, and how to read it back.

    flags.cfg           the resolved flags; `--flagfile=flags.cfg` repeats the run
    results.json        written once the run is finished (schema below)
    curve.csv           one row per evaluation: step, train and validation metrics, time
    curve.png           the curve, with the task's reference lines (e.g. a baseline)
    checkpoints/        step-NNNNNNNN/ directories: weights, optimizer and RNG state
    tensorboard/        TensorBoard events (train/ and validation/)
    model.keras         the final model (the weights the test used)
    log.txt             the log of every session of the run
    progress.json       where the run is: status, step, ETA, last metrics (rewritten at every evaluation)
    .lock               the lock a running writer holds (`run_folder`)

results.json (SCHEMA_VERSION 1) holds:
    schema, task, status ("finished", or "diverged": then "diverged" says {step, message},
    metrics have no test, and the run cannot be resumed), flags {name: value}, model, parameters,
    steps (trained: --steps, or fewer where --stop_when ended the run), wall_time_s
    (all sessions, setup and test included), train_time_s (inside
    fit), steps_per_s (steps / train_time_s), backend, strategy, replicas,
    jit_compile, devices, machine {cpu, cores_used, os, python}, versions {rum_tf, keras,
    tensorflow, jax}, code {commit, clean} (the git commit of the code that ran and whether its
    tree was clean; null outside a git checkout), finished_at,
    metrics {"train": {...}, "valid": {...}, "test": {...}} (the last evaluation's
    training-window means, the last validation, the final test; absent parts omitted),
    best (when the task keeps the best weights: {monitor, mode, step, value}),
    stopped (when --stop_when ended the run: {step, rule, reason}),
    and the task's own fields under "task_results" (e.g. the copying baseline).

progress.json (`Progress`) holds: task, status ("running", "finished", "stopped",
"diverged", "failed", "interrupted"), step, steps, eta_s, steps_per_s, metrics (the last evaluation),
message (why it failed, diverged or stopped), pid, updated_at (ISO-8601 UTC).

Every file here is written by `atomic_path` (a temporary name, then a rename), so a reader, or
a run killed while writing, never sees half a file.
"""

import csv
import datetime
import json
import math
import os

from absl import logging

from rum_tf.training import run_folder

SCHEMA_VERSION = 1
FLAGS_FILE = "flags.cfg"
RESULTS_FILE = "results.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
MODEL_FILE = "model.keras"
LOG_FILE = "log.txt"
PROGRESS_FILE = "progress.json"

# curve.csv (and Keras log) columns that are bookkeeping, not metrics.
BOOKKEEPING = ("epoch", "step", "train_time_s", "wall_time_s", "learning_rate")

REQUIRED_KEYS = (
    "task",
    "status",
    "flags",
    "model",
    "parameters",
    "steps",
    "wall_time_s",
    "steps_per_s",
    "backend",
    "metrics",
)


def write_csv(path, columns, rows):
    """Write `rows` (dicts) under the header `columns` atomically; cells as `format_cell`."""
    with run_folder.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([format_cell(row.get(k)) for k in columns])


def utc_now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _finite(value):
    """JSON has no NaN/inf: write them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def summary(
    *,
    task,
    flags,
    model,
    parameters,
    steps,
    wall_time_s,
    train_time_s,
    environment,
    metrics,
    task_results,
    status="finished",
    trained_steps=None,
    finished_at=None,
    **extra,
):
    """The results.json dict (schema above) of a run or of a multi-run parent, before `write_results`.

    Args:
      environment: backend, strategy, replicas, jit_compile, devices, machine, versions, code.
      trained_steps: the steps behind train_time_s, for steps_per_s (default `steps`).
      finished_at: the finishing time to record (default now).
      **extra: optional fields (best, stopped, diverged), written last.
    """
    trained = steps if trained_steps is None else trained_steps
    return {
        "task": task,
        "status": status,
        "flags": dict(flags),
        "model": model,
        "parameters": parameters,
        "steps": steps,
        "wall_time_s": round(wall_time_s, 3),
        "train_time_s": round(train_time_s, 3),
        "steps_per_s": round(trained / train_time_s, 3) if train_time_s > 0 else None,
        **{
            k: environment.get(k)
            for k in ("backend", "strategy", "replicas", "jit_compile", "devices", "machine", "versions", "code")
        },
        "finished_at": finished_at or utc_now(),
        "metrics": metrics,
        "task_results": dict(task_results),
        **{k: v for k, v in extra.items() if v is not None},
    }


def write_results(output_dir, results):
    """Check `results` against the schema and write results.json atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(f"results lack {missing}")
    results = {"schema": SCHEMA_VERSION, **results}
    path = os.path.join(output_dir, RESULTS_FILE)
    run_folder.atomic_write_text(path, json.dumps(_finite(results), indent=2, sort_keys=False) + "\n")
    return path


def read_json(path):
    """A JSON file as a dict, or None if it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_results(output_dir):
    """results.json of a run as a dict, or None if the run has not finished."""
    return read_json(os.path.join(output_dir, RESULTS_FILE))


def read_curve(path, max_step=None):
    """Rows of curve.csv as dicts of floats, one per step (the last row wins).

    Rows beyond `max_step` and a torn last line (a run killed while writing) are dropped.
    """
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if None in row or None in row.values():  # a torn line: more or fewer fields than the header
                continue
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except ValueError:
                    pass  # an empty cell
            if "step" not in parsed:
                continue
            step = int(parsed["step"])
            if max_step is None or step <= max_step:
                rows[step] = parsed
    return [rows[s] for s in sorted(rows)]


def truncate_curve(path, max_step):
    """Drop rows after `max_step` (written after the checkpoint a run resumes from)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    rows = read_curve(path, max_step)
    if not header:
        return
    write_csv(path, header, rows)


def write_progress(folder, *, task, status, step, steps, eta_s=None, steps_per_s=None, metrics=None, message=None):
    """Rewrite folder/progress.json (schema above); returns the record."""
    record = {
        "task": task,
        "status": status,
        "step": int(step),
        "steps": int(steps),
        "eta_s": None if eta_s is None else round(float(eta_s), 1),
        "steps_per_s": None if steps_per_s is None else round(float(steps_per_s), 3),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "message": message,
        "pid": os.getpid(),
        "updated_at": utc_now(),
    }
    run_folder.atomic_write_text(os.path.join(folder, PROGRESS_FILE), json.dumps(_finite(record)) + "\n")
    return record


class Progress:
    """A run's progress.json: `update` at every evaluation, `write` it then and at the session's start and end.

    Args:
      folder, task, steps: the run folder, the task's name, the run's --steps.
      on_write: (folder, record) -> None, called after every write (a multi-run parent follows its sub-runs).
    """

    def __init__(self, folder, task, steps, on_write=None):
        self.folder, self.task, self.steps, self.on_write = folder, task, steps, on_write
        self.step, self.metrics, self.steps_per_s = 0, {}, None
        self.accepted = False  # the run has taken its folder over: its failures are the folder's news

    def update(self, step, metrics=None, steps_per_s=None):
        self.step, self.metrics, self.steps_per_s = step, dict(metrics or {}), steps_per_s

    def write(self, status, message=None):
        rate = self.steps_per_s
        eta = (self.steps - self.step) / rate if rate and status == "running" else None
        record = write_progress(
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
        if self.on_write is not None:
            self.on_write(self.folder, record)
        return record


def read_progress(folder):
    """progress.json of a run folder as a dict, or None."""
    return read_json(os.path.join(folder, PROGRESS_FILE))


def format_cell(value):
    """A curve.csv cell: integers without a decimal point, floats in full precision."""
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: the one place plots set matplotlib up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Save a matplotlib figure to `path` atomically and close it."""
    try:
        with run_folder.atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        pyplot().close(fig)
    return path


def try_plot(draw, *args, **kwargs):
    """`draw(*args, **kwargs)`, or None and a warning when it fails: a plot never costs a run its results.

    A full disk is not a plotting failure: it propagates (the harness reports it).
    """
    try:
        return draw(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  (matplotlib missing, broken, or any drawing error)
        if run_folder.is_disk_full(e):
            raise
        logging.warning(
            "no plot from %s (%s: %s); the run's other outputs are complete",
            getattr(draw, "__name__", draw),
            type(e).__name__,
            str(e).splitlines()[0] if str(e) else "",
        )
        return None


def plot_curve(csv_path, png_path, panels, title=""):
    """Draw curve.csv into a PNG, one panel per entry of `panels`.

    Args:
      panels: list of (y label, [csv columns], {reference label: y value}); columns
        absent from the CSV are skipped, a panel with nothing to draw is left out.
    """
    plt = pyplot()
    rows = read_curve(csv_path)
    drawn = [(label, [k for k in keys if any(k in r for r in rows)], refs) for label, keys, refs in panels]
    drawn = [p for p in drawn if p[1]]
    if not drawn:
        return None
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 3 * len(drawn)), sharex=True, squeeze=False)
    for ax, (label, keys, refs) in zip(axes[:, 0], drawn):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key, marker="." if len(points) < 30 else None)
        for ref_label, value in (refs or {}).items():
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{ref_label} ({value:.4g})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return save_figure(fig, png_path)


def curve_metrics(rows):
    """results.json "metrics" from the curve: the last row's training and validation metrics."""
    if not rows:
        return {}
    row = rows[-1]
    metrics = {"train": {k: v for k, v in row.items() if k not in BOOKKEEPING and not k.startswith("val_")}}
    valid = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return metrics | ({"valid": valid} if valid else {})


def plot_run(folder, references, title=""):
    """A run's curve.png: one panel per metric (its training and validation columns, its reference lines
    from `references` {metric: {label: value}}); a warning instead where it cannot be drawn."""
    curve_path = os.path.join(folder, CURVE_CSV)
    names = []
    for row in read_curve(curve_path):
        for key in row:
            base = key[4:] if key.startswith("val_") else key
            if base not in BOOKKEEPING and base not in names:
                names.append(base)
    names.sort(key=lambda n: (n != "loss", n))
    panels = [(name, [name, f"val_{name}"], dict(references.get(name, {}))) for name in names]
    return try_plot(plot_curve, curve_path, os.path.join(folder, CURVE_PNG), panels, title=title)
