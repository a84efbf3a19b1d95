"""What a run leaves in its --output_dir, and how to read it back.

    flags.cfg           the resolved flags; `--flagfile=flags.cfg` repeats the run
    results.json        written once the run is finished (schema below)
    curve.csv           one row per evaluation: step, train and validation metrics, time
    curve.png           the curve, with the task's reference lines (e.g. a baseline)
    checkpoints/        step-NNNNNNNN/ directories: weights, optimizer and RNG state
    tensorboard/        TensorBoard events (train/ and validation/)
    model.keras         the final model (the weights the test used)
    log.txt             the log of every session of the run

results.json (SCHEMA_VERSION 1) holds:
    schema, task, status ("finished"), flags {name: value}, model, parameters,
    steps (trained: --steps, or fewer where --stop_when ended the run), wall_time_s
    (all sessions, setup and test included), train_time_s (inside
    fit), steps_per_s (steps / train_time_s), backend, strategy, replicas,
    jit_compile, devices, machine {cpu, cores_used, os, python}, versions {rum_tf, keras,
    tensorflow, jax}, finished_at,
    metrics {"train": {...}, "valid": {...}, "test": {...}} (the last evaluation's
    training-window means, the last validation, the final test; absent parts omitted),
    best (when the task keeps the best weights: {monitor, mode, step, value}),
    stopped (when --stop_when ended the run: {step, rule, reason}),
    and the task's own fields under "task_results" (e.g. the copying baseline).
"""

import csv
import json
import math
import os

SCHEMA_VERSION = 1
FLAGS_FILE = "flags.cfg"
RESULTS_FILE = "results.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
MODEL_FILE = "model.keras"
LOG_FILE = "log.txt"

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


def atomic_write_text(path, text):
    """Write `text` to `path` so that a reader (or a killed writer) never sees half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finite(value):
    """JSON has no NaN/inf: write them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_results(output_dir, results):
    """Check `results` against the schema and write results.json atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(f"results lack {missing}")
    results = {"schema": SCHEMA_VERSION, **results}
    path = os.path.join(output_dir, RESULTS_FILE)
    atomic_write_text(path, json.dumps(_finite(results), indent=2, sort_keys=False) + "\n")
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
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(format_cell(row.get(k)) for k in header))
    atomic_write_text(path, "\n".join(lines) + "\n")


def format_cell(value):
    """A curve.csv cell: integers without a decimal point, floats in full precision."""
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def plot_curve(csv_path, png_path, panels, title=""):
    """Draw curve.csv into a PNG, one panel per entry of `panels`.

    Args:
      panels: list of (y label, [csv columns], {reference label: y value}); columns
        absent from the CSV are skipped, a panel with nothing to draw is left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
