"""What a run leaves in its --output_dir, and how to read it back (docs/TRAINING.md describes every field).

Each file is written via `run_folder.atomic_path`: a reader, or a run killed while writing, never sees half a file."""

import contextlib
import csv
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
_ENVIRONMENT = ("backend", "strategy", "replicas", "jit_compile", "onednn", "devices", "machine", "versions", "code")


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
    """The results.json dict of a run or of a multi-run parent. `environment` has the `_ENVIRONMENT` keys,
    `trained_steps` (default `steps`) are behind train_time_s; `extra` (best, stopped, diverged) come last."""
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
        **{k: environment.get(k) for k in _ENVIRONMENT},
        "finished_at": finished_at or run_folder.utc_now(),
        "metrics": metrics,
        "task_results": dict(task_results),
        **{k: v for k, v in extra.items() if v is not None},
    }


def write_results(output_dir, results):
    """Check `results` against the schema and write results.json."""
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(f"results lack {missing}")
    path = os.path.join(output_dir, RESULTS_FILE)
    run_folder.atomic_write_text(path, json.dumps(_finite({"schema": SCHEMA_VERSION, **results}), indent=2) + "\n")
    return path


def read_json(path):
    """A JSON file as a dict, or None if it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_results(output_dir):
    return read_json(os.path.join(output_dir, RESULTS_FILE))


def read_progress(folder):
    return read_json(os.path.join(folder, PROGRESS_FILE))


class Progress:
    """A run's progress.json: `update` it at every evaluation, `write` it then and at each session's start
    and end; `on_write(folder, record)` follows every write (a multi-run parent follows its sub-runs)."""

    def __init__(self, folder, task, steps, on_write=None):
        self.folder, self.task, self.steps, self.on_write = folder, task, steps, on_write
        self.step, self.metrics, self.steps_per_s = 0, {}, None
        self.accepted = False  # the run has taken its folder over: its failures are the folder's news

    def update(self, step, metrics=None, steps_per_s=None):
        self.step, self.metrics, self.steps_per_s = step, dict(metrics or {}), steps_per_s

    def write(self, status, message=None):
        rate = self.steps_per_s
        record = {
            "task": self.task,
            "status": status,
            "step": int(self.step),
            "steps": int(self.steps),
            "eta_s": round(float((self.steps - self.step) / rate), 1) if rate and status == "running" else None,
            "steps_per_s": None if rate is None else round(float(rate), 3),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "message": message,
            "pid": os.getpid(),
            "updated_at": run_folder.utc_now(),
        }
        run_folder.atomic_write_text(os.path.join(self.folder, PROGRESS_FILE), json.dumps(_finite(record)) + "\n")
        if self.on_write is not None:
            self.on_write(self.folder, record)
        return record


def format_cell(value):
    """A curve.csv cell: integers without a decimal point, floats in full precision."""
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def write_csv(path, columns, rows):
    """Write `rows` (dicts) under the header `columns`, cells as `format_cell`."""
    with run_folder.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([format_cell(row.get(k)) for k in columns] for row in rows)


def read_curve(path, max_step=None):
    """Rows of curve.csv as dicts of floats (empty cells left out), one per step (the last row wins); rows
    beyond `max_step` and a torn last line (a run killed while writing) are dropped."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if None in row or None in row.values():  # a torn line: more or fewer fields than the header
                continue
            parsed = {}
            for key, value in row.items():
                with contextlib.suppress(ValueError):
                    parsed[key] = float(value)
            step = parsed.get("step")
            if step is not None and (max_step is None or int(step) <= max_step):
                rows[int(step)] = parsed
    return [rows[s] for s in sorted(rows)]


def truncate_curve(path, max_step):
    """Drop rows after `max_step` (written after the checkpoint a run resumes from)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if header:
        write_csv(path, header, read_curve(path, max_step))


def curve_metrics(rows):
    """results.json "metrics" from the curve: the last row's training and validation metrics."""
    if not rows:
        return {}
    row = rows[-1]
    metrics = {"train": {k: v for k, v in row.items() if k not in BOOKKEEPING and not k.startswith("val_")}}
    valid = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return metrics | ({"valid": valid} if valid else {})


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: the one place plots set matplotlib up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Save a matplotlib figure to `path` and close it."""
    try:
        with run_folder.atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        pyplot().close(fig)
    return path


def try_plot(draw, *args, **kwargs):
    """`draw(*args, **kwargs)`, or None and a warning when it fails (a plot never costs a run its results); a full
    disk is not a plotting failure: it propagates (the harness reports it)."""
    try:
        return draw(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  (matplotlib missing, broken, or any drawing error)
        if run_folder.is_disk_full(e):
            raise
        said = (str(e).splitlines() or [""])[0]
        name = getattr(draw, "__name__", draw)
        logging.warning("no plot from %s (%s: %s); the run's other outputs are complete", name, type(e).__name__, said)
        return None


def plot_curve(csv_path, png_path, panels, title=""):
    """Draw curve.csv into a PNG, one panel per (y label, [csv columns], {reference label: y value}) of
    `panels`; absent columns are skipped, and a panel with nothing to draw left out."""
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
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return save_figure(fig, png_path)


def plot_run(folder, references, title="", suffix=""):
    """A run's curve.png, a warning where it cannot be drawn: one panel per metric, labelled with its name and
    `suffix`, of its training and validation columns and its reference lines `references[metric]`."""
    curve_path = os.path.join(folder, CURVE_CSV)
    names = {key.removeprefix("val_") for row in read_curve(curve_path) for key in row} - set(BOOKKEEPING)
    names = sorted(names, key=lambda n: (n != "loss", n))
    panels = [(n + suffix, [n, f"val_{n}"], dict(references.get(n, {}))) for n in names]
    return try_plot(plot_curve, curve_path, os.path.join(folder, CURVE_PNG), panels, title=title)
