"""Several harness runs under one --output_dir, then one summary of them.

A task family such as bAbI trains one model per task: each is an ordinary `loop.run`
in its own sub-folder (complete outputs, resumable on its own), and the parent folder
gets the aggregate:

    flags.cfg      the parent command's resolved flags
    results.json   the usual schema; "metrics" are the means over the sub-runs of their
                   train / valid / test metrics, "task_results" has the per-run table
                   ("runs") and the means ("mean")
    curve.csv      per step, the mean over the sub-runs of each curve column
    curve.png      its plot
    runs.csv       one row per sub-run: its final metrics, steps, time
    runs.png       a bar chart of `bar_metric` (e.g. test accuracy) per sub-run
    log.txt        the log of every session (the sub-runs' lines included)

`parameters` is the largest sub-run's count; `wall_time_s` / `train_time_s` are sums.
"""

import csv
import dataclasses
import datetime
import os
from typing import Any, Callable, Sequence

from absl import logging

from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import loop
from rum_tf.training import results


@dataclasses.dataclass
class SubRun:
    """One sub-run: `key` names it (e.g. "qa1"), `folder` is relative to the parent,
    `run()` trains it (or reports it if finished) and returns its results dict."""

    key: str
    folder: str
    run: Callable[[], Any]
    info: dict = dataclasses.field(default_factory=dict)


RUNS_CSV = "runs.csv"
RUNS_PNG = "runs.png"


def _mean(values):
    values = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def _mean_metrics(summaries, part):
    """{metric: mean over the summaries that have it} of metrics[part]."""
    names = []
    for s in summaries:
        for name in s.get("metrics", {}).get(part, {}):
            if name not in names:
                names.append(name)
    out = {}
    for name in names:
        value = _mean(s.get("metrics", {}).get(part, {}).get(name) for s in summaries)
        if value is not None:
            out[name] = value
    return out


def _mean_curve(curves):
    """Per step present in every curve: the mean of each column present in all of them."""
    if not curves or any(not c for c in curves):
        return [], []
    by_step = [{int(r["step"]): r for r in c} for c in curves]
    steps = sorted(set.intersection(*(set(b) for b in by_step)))
    columns = [k for k in curves[0][0] if all(k in c[0] for c in curves)]
    rows = []
    for step in steps:
        rows.append({k: _mean(b[step].get(k) for b in by_step) for k in columns})
    return columns, rows


def _write_csv(path, columns, rows):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([results.format_cell(row.get(k)) for k in columns])
    os.replace(tmp, path)


def _bar_chart(path, labels, values, ylabel, title, reference=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(labels) + 2), 3.5))
    ax.bar(range(len(labels)), [v if v is not None else 0 for v in values], color="tab:blue")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 8 else 0)
    mean = _mean(values)
    if mean is not None:
        ax.axhline(mean, color="tab:red", linewidth=1, label=f"mean {mean:.4g}")
    for label, value in (reference or {}).items():
        ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{label} {value:.4g}")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def run_all(sub_runs: Sequence[SubRun], output_dir, *, task, model, flags, flagfile_text, bar_metric=("test",
            "accuracy"), title="", extra_results=None):
    """Run every sub-run in order, then write and return the parent's results dict.

    Args:
      sub_runs: the runs, each writing into output_dir/<folder>.
      output_dir: the parent folder.
      task, model, flags, flagfile_text: as in `loop.RunConfig` (results.json fields).
      bar_metric: (part, metric) drawn per sub-run in runs.png and put first in runs.csv.
      title: title of the plots.
      extra_results: more fields for task_results.
    """
    os.makedirs(output_dir, exist_ok=True)
    with loop.FileLog(os.path.join(output_dir, results.LOG_FILE)):
        flags_path = os.path.join(output_dir, results.FLAGS_FILE)
        if not os.path.exists(flags_path):
            results.atomic_write_text(flags_path, flagfile_text)
        summaries = []
        for i, sub in enumerate(sub_runs, 1):
            logging.info("%s: run %d/%d, %s, in %s", task, i, len(sub_runs), sub.key,
                         os.path.join(output_dir, sub.folder))
            summaries.append(sub.run())  # refuses (loop.RunError) a folder holding another run
        # Written again once every sub-run has accepted these flags (a refused command leaves
        # the earlier file alone).
        results.atomic_write_text(flags_path, flagfile_text)
        return _aggregate(sub_runs, summaries, output_dir, task=task, model=model, flags=flags,
                          bar_metric=bar_metric, title=title, extra_results=extra_results)


def _aggregate(sub_runs, summaries, output_dir, *, task, model, flags, bar_metric, title, extra_results):
    part, metric = bar_metric
    table = {}
    for sub, s in zip(sub_runs, summaries):
        entry = dict(sub.info)
        for p in ("train", "valid", "test"):
            for name, value in s.get("metrics", {}).get(p, {}).items():
                entry[f"{p}_{name}"] = value
        entry.update(parameters=s.get("parameters"), steps=s.get("steps"), wall_time_s=s.get("wall_time_s"),
                     output_dir=sub.folder)
        if s.get("best"):
            entry["best_step"] = s["best"].get("step")
        table[sub.key] = entry
    metrics = {p: m for p in ("train", "valid", "test") if (m := _mean_metrics(summaries, p))}
    first = summaries[0]
    train_time = sum(float(s.get("train_time_s") or 0) for s in summaries)
    total_steps = sum(int(s.get("steps") or 0) for s in summaries)
    summary = {
        "task": task,
        "status": "finished",
        "flags": dict(flags),
        "model": model,
        "parameters": max(int(s.get("parameters") or 0) for s in summaries),
        "steps": first.get("steps"),
        "wall_time_s": round(sum(float(s.get("wall_time_s") or 0) for s in summaries), 3),
        "train_time_s": round(train_time, 3),
        "steps_per_s": round(total_steps / train_time, 3) if train_time > 0 else None,
        **{k: first.get(k) for k in ("backend", "strategy", "replicas", "jit_compile", "devices", "machine", "versions")},
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics,
        "task_results": {
            **dict(extra_results or {}),
            "runs": table,
            "mean": {f"{p}_{name}": v for p, m in metrics.items() for name, v in m.items()},
        },
    }

    # Mean curve over the sub-runs, and its plot.
    curves = [results.read_curve(os.path.join(output_dir, sub.folder, results.CURVE_CSV)) for sub in sub_runs]
    columns, rows = _mean_curve(curves)
    curve_path = os.path.join(output_dir, results.CURVE_CSV)
    if rows:
        _write_csv(curve_path, columns, rows)
        names = [c for c in columns if c not in ("step", "train_time_s", "wall_time_s", "learning_rate")
                 and not c.startswith("val_")]
        names.sort(key=lambda n: (n != "loss", n))
        panels = [(f"{n} (mean of {len(sub_runs)})", [n, f"val_{n}"], {}) for n in names]
        results.plot_curve(curve_path, os.path.join(output_dir, results.CURVE_PNG), panels, title=title)

    # The per-run table and its bar chart.
    key_column = f"{part}_{metric}"
    columns = ["run", key_column] + sorted({k for e in table.values() for k in e} - {key_column, "output_dir"}) + [
        "output_dir"]
    _write_csv(os.path.join(output_dir, RUNS_CSV), columns, [{"run": k, **e} for k, e in table.items()])
    _bar_chart(os.path.join(output_dir, RUNS_PNG), list(table), [e.get(key_column) for e in table.values()],
               f"{part} {metric}", title)

    results.write_results(output_dir, summary)
    summary = results.read_results(output_dir)
    mean = metrics.get(part, {}).get(metric)
    logging.info("%s: %d runs finished in %s (sum); mean %s %s %s; results in %s", task, len(sub_runs),
                 callbacks_lib.format_duration(summary["wall_time_s"]), part, metric,
                 "?" if mean is None else f"{mean:.4g}", os.path.join(output_dir, results.RESULTS_FILE))
    for key, entry in table.items():
        value = entry.get(key_column)
        logging.info("  %-6s %s %s", key, key_column, "?" if value is None else f"{value:.4g}")
    return summary
