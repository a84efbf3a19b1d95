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
    progress.json  step and steps summed over the sub-runs, the running sub-run's rate and metrics

`parameters` is the largest sub-run's count; `wall_time_s` / `train_time_s` are sums.
The parent folder has its own lock (`run_folder`), taken before anything else, and each
sub-run takes its sub-folder's: different files, so they never wait on each other.
"""

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import results, run_folder


@dataclasses.dataclass
class SubRun:
    """One sub-run: `key` names it (e.g. "qa1"), `folder` is relative to the parent,
    `run(on_progress)` trains it (or reports it if finished; `loop.run`'s `on_progress`)
    and returns its results dict."""

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


def _bar_chart(path, labels, values, ylabel, title, reference=None):
    plt = results.pyplot()
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
    return results.save_figure(fig, path)


class _ParentProgress:
    """The parent's progress.json: rewritten whenever a sub-run writes its own, with step and steps summed."""

    def __init__(self, output_dir, task, sub_runs, steps_each):
        self.output_dir = output_dir
        self.task = task
        self.folders = [os.path.join(output_dir, sub.folder) for sub in sub_runs]
        self.steps_each = int(steps_each or 0)
        self.current = None  # the record of the sub-run that wrote last

    def __call__(self, folder, record):
        if os.path.abspath(folder) in map(os.path.abspath, self.folders):
            self.current = record
            self.write("running")

    def write(self, status, message=None):
        records = [results.read_progress(f) if os.path.isdir(f) else None for f in self.folders]
        step = sum(int(r["step"]) if r else 0 for r in records)
        steps = sum(int(r["steps"]) if r else self.steps_each for r in records)
        rate = (self.current or {}).get("steps_per_s") if status == "running" else None
        return results.write_progress(
            self.output_dir,
            task=self.task,
            status=status,
            step=step,
            steps=steps,
            eta_s=(steps - step) / rate if rate else None,
            steps_per_s=rate,
            metrics=(self.current or {}).get("metrics"),
            message=message,
        )


def run_all(
    sub_runs: Sequence[SubRun],
    output_dir,
    *,
    task,
    model,
    flags,
    flagfile_text,
    bar_metric=("test", "accuracy"),
    title="",
    extra_results=None,
):
    """Run every sub-run in order, then write and return the parent's results dict.

    Args:
      sub_runs: the runs, each writing into output_dir/<folder>.
      output_dir: the parent folder.
      task, model, flags, flagfile_text: as in `loop.RunConfig` (results.json fields).
      bar_metric: (part, metric) drawn per sub-run in runs.png and put first in runs.csv.
      title: title of the plots.
      extra_results: more fields for task_results.
    """
    progress = _ParentProgress(output_dir, task, sub_runs, dict(flags).get("steps"))

    def body():
        flags_path = os.path.join(output_dir, results.FLAGS_FILE)
        if not os.path.exists(flags_path):
            run_folder.atomic_write_text(flags_path, flagfile_text)
        progress.write("running")
        summaries = []
        for i, sub in enumerate(sub_runs, 1):
            logging.info(
                "%s: run %d/%d, %s, in %s", task, i, len(sub_runs), sub.key, os.path.join(output_dir, sub.folder)
            )
            summaries.append(sub.run(progress))  # refuses (loop.RunError) a folder holding another run
        # Written again once every sub-run has accepted these flags (a refused command leaves
        # the earlier file alone).
        run_folder.atomic_write_text(flags_path, flagfile_text)
        summary = _aggregate(
            sub_runs,
            summaries,
            output_dir,
            task=task,
            model=model,
            flags=flags,
            bar_metric=bar_metric,
            title=title,
            extra_results=extra_results,
        )
        progress.write("finished")
        return summary

    return run_folder.RunFolder(output_dir).guarded(body, progress.write)


def _aggregate(sub_runs, summaries, output_dir, *, task, model, flags, bar_metric, title, extra_results):
    part, metric = bar_metric
    table = {}
    for sub, s in zip(sub_runs, summaries):
        entry = dict(sub.info)
        for p in ("train", "valid", "test"):
            for name, value in s.get("metrics", {}).get(p, {}).items():
                entry[f"{p}_{name}"] = value
        entry.update(
            parameters=s.get("parameters"),
            steps=s.get("steps"),
            wall_time_s=s.get("wall_time_s"),
            output_dir=sub.folder,
        )
        if s.get("best"):
            entry["best_step"] = s["best"].get("step")
        table[sub.key] = entry
    metrics = {p: m for p in ("train", "valid", "test") if (m := _mean_metrics(summaries, p))}
    first = summaries[0]
    summary = results.summary(
        task=task,
        flags=flags,
        model=model,
        parameters=max(int(s.get("parameters") or 0) for s in summaries),
        steps=first.get("steps"),
        wall_time_s=sum(float(s.get("wall_time_s") or 0) for s in summaries),
        train_time_s=sum(float(s.get("train_time_s") or 0) for s in summaries),
        trained_steps=sum(int(s.get("steps") or 0) for s in summaries),
        environment=first,
        # When the last sub-run finished, so that summarising finished runs again rewrites nothing.
        finished_at=max((s["finished_at"] for s in summaries if s.get("finished_at")), default=None),
        metrics=metrics,
        task_results={
            **dict(extra_results or {}),
            "runs": table,
            "mean": {f"{p}_{name}": v for p, m in metrics.items() for name, v in m.items()},
        },
    )
    # The mean curve over the sub-runs and the per-run table, then results.json, then the plots
    # (a plot that fails costs nothing else).
    curves = [results.read_curve(os.path.join(output_dir, sub.folder, results.CURVE_CSV)) for sub in sub_runs]
    columns, rows = _mean_curve(curves)
    curve_path = os.path.join(output_dir, results.CURVE_CSV)
    if rows:
        results.write_csv(curve_path, columns, rows)
    key_column = f"{part}_{metric}"
    table_columns = ["run", key_column] + sorted({k for e in table.values() for k in e} - {key_column, "output_dir"})
    results.write_csv(
        os.path.join(output_dir, RUNS_CSV), table_columns + ["output_dir"], [{"run": k, **e} for k, e in table.items()]
    )
    results.write_results(output_dir, summary)
    summary = results.read_results(output_dir)
    if rows:
        names = [c for c in columns if c not in results.BOOKKEEPING and not c.startswith("val_")]
        names.sort(key=lambda n: (n != "loss", n))
        panels = [(f"{n} (mean of {len(sub_runs)})", [n, f"val_{n}"], {}) for n in names]
        results.try_plot(
            results.plot_curve, curve_path, os.path.join(output_dir, results.CURVE_PNG), panels, title=title
        )
    results.try_plot(
        _bar_chart,
        os.path.join(output_dir, RUNS_PNG),
        list(table),
        [e.get(key_column) for e in table.values()],
        f"{part} {metric}",
        title,
    )

    mean = metrics.get(part, {}).get(metric)
    logging.info(
        "%s: %d runs finished in %s (sum); mean %s %s %s; results in %s",
        task,
        len(sub_runs),
        callbacks_lib.format_duration(summary["wall_time_s"]),
        part,
        metric,
        "?" if mean is None else f"{mean:.4g}",
        os.path.join(output_dir, results.RESULTS_FILE),
    )
    for key, entry in table.items():
        value = entry.get(key_column)
        logging.info("  %-6s %s %s", key, key_column, "?" if value is None else f"{value:.4g}")
    return summary
