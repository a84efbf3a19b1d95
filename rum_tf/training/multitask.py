"""Several harness runs under one --output_dir, then one summary of them (docs/TASKS_BABI_PTB.md).

Each sub-run is an ordinary `loop.run` in its own sub-folder, complete and resumable. The parent gets the means of
their metrics and curves, a table and bar chart of the runs, a progress.json summing their steps, and its own lock
(never waiting on a sub-run's)."""

import dataclasses
import os
from collections.abc import Callable, Sequence

from absl import logging

from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import results, run_folder

RUNS_CSV = "runs.csv"
RUNS_PNG = "runs.png"
_PARTS = ("train", "valid", "test")


@dataclasses.dataclass
class SubRun:
    """One sub-run: `key` names it (e.g. "qa1"), `folder` is relative to the parent, `run(on_progress)`
    trains it (or reports it if finished; `loop.run`'s `on_progress`) and returns its results dict."""

    key: str
    folder: str
    run: Callable
    info: dict = dataclasses.field(default_factory=dict)


def _mean(values):
    values = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def _mean_metrics(summaries, part):
    """{metric: mean over the summaries that have it} of metrics[part]."""
    parts = [s.get("metrics", {}).get(part, {}) for s in summaries]
    means = {name: _mean(p.get(name) for p in parts) for name in dict.fromkeys(n for p in parts for n in p)}
    return {name: value for name, value in means.items() if value is not None}


def _mean_curve(curves):
    """(columns, rows): per step present in every curve, the mean of each column present in all of them."""
    if not curves or any(not c for c in curves):
        return [], []
    by_step = [{int(r["step"]): r for r in c} for c in curves]
    steps = sorted(set.intersection(*(set(b) for b in by_step)))
    columns = [k for k in curves[0][0] if all(k in c[0] for c in curves)]
    return columns, [{k: _mean(b[step].get(k) for b in by_step) for k in columns} for step in steps]


def _bar_chart(path, labels, values, ylabel, title):
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(labels) + 2), 3.5))
    ax.bar(range(len(labels)), [v if v is not None else 0 for v in values], color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 8 else 0)
    mean = _mean(values)
    if mean is not None:
        ax.axhline(mean, color="tab:red", linewidth=1, label=f"mean {mean:.4g}")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return results.save_figure(fig, path)


class _ParentProgress(results.Progress):
    """The parent's progress.json, written again whenever a sub-run writes its own: step and steps summed
    over the sub-runs, the running one's rate and metrics."""

    def __init__(self, output_dir, task, sub_runs, steps_each):
        super().__init__(output_dir, task, 0)
        self.folders = [os.path.abspath(os.path.join(output_dir, sub.folder)) for sub in sub_runs]
        self.steps_each = int(steps_each or 0)

    def __call__(self, folder, record):
        if os.path.abspath(folder) in self.folders:
            self.metrics, self.steps_per_s = record["metrics"], record["steps_per_s"]
            self.write("running")

    def write(self, status, message=None):
        records = [results.read_progress(f) for f in self.folders]
        self.step = sum(int(r["step"]) if r else 0 for r in records)
        self.steps = sum(int(r["steps"]) if r else self.steps_each for r in records)
        if status != "running":
            self.steps_per_s = None  # a rate, and an ETA, only while a sub-run trains
        return super().write(status, message)


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
    """Run every sub-run (into output_dir/<folder>), then write the parent's files (a failing plot costs nothing else)
    and return its results.json. `task`, `model`, `flags`, `flagfile_text` are as in `loop.RunConfig`; `bar_metric`
    (part, metric) is drawn per sub-run in runs.png and first in runs.csv; `extra_results` join task_results."""
    progress = _ParentProgress(output_dir, task, sub_runs, dict(flags).get("steps"))
    flags_path = os.path.join(output_dir, results.FLAGS_FILE)

    def body():
        if not os.path.exists(flags_path):
            run_folder.atomic_write_text(flags_path, flagfile_text)
        progress.write("running")
        summaries = []
        for i, sub in enumerate(sub_runs, 1):
            logging.info(
                "%s: run %d/%d, %s, in %s", task, i, len(sub_runs), sub.key, os.path.join(output_dir, sub.folder)
            )
            summaries.append(sub.run(progress))  # refuses (loop.RunError) a folder holding another run
        # Written again once every sub-run has accepted these flags (a refused command leaves the earlier file).
        run_folder.atomic_write_text(flags_path, flagfile_text)
        summary = _summarise(sub_runs, summaries, output_dir, task, model, flags, bar_metric, title, extra_results)
        progress.write("finished")
        return summary

    return run_folder.RunFolder(output_dir).guarded(body, progress.write)


def _summarise(sub_runs, summaries, output_dir, task, model, flags, bar_metric, title, extra_results):
    """Write the parent's curve.csv, runs.csv, results.json, then the plots (a plot that fails costs nothing
    else); returns results.json as written."""
    table = {}
    for sub, s in zip(sub_runs, summaries):
        table[sub.key] = {
            **sub.info,
            **{f"{p}_{name}": v for p in _PARTS for name, v in s.get("metrics", {}).get(p, {}).items()},
            "parameters": s.get("parameters"),
            "steps": s.get("steps"),
            "wall_time_s": s.get("wall_time_s"),
            "output_dir": sub.folder,
        }
        if s.get("best"):
            table[sub.key]["best_step"] = s["best"].get("step")
    metrics = {p: m for p in _PARTS if (m := _mean_metrics(summaries, p))}
    summary = results.summary(
        task=task,
        flags=flags,
        model=model,
        parameters=max(int(s.get("parameters") or 0) for s in summaries),
        steps=summaries[0].get("steps"),
        wall_time_s=sum(float(s.get("wall_time_s") or 0) for s in summaries),
        train_time_s=sum(float(s.get("train_time_s") or 0) for s in summaries),
        trained_steps=sum(int(s.get("steps") or 0) for s in summaries),
        environment=summaries[0],
        # When the last sub-run finished, so that summarising finished runs again rewrites nothing.
        finished_at=max((s["finished_at"] for s in summaries if s.get("finished_at")), default=None),
        metrics=metrics,
        task_results={
            **dict(extra_results or {}),
            "runs": table,
            "mean": {f"{p}_{name}": v for p, m in metrics.items() for name, v in m.items()},
        },
    )
    curves = [results.read_curve(os.path.join(output_dir, sub.folder, results.CURVE_CSV)) for sub in sub_runs]
    columns, rows = _mean_curve(curves)
    if rows:
        results.write_csv(os.path.join(output_dir, results.CURVE_CSV), columns, rows)
    part, metric = bar_metric
    key = f"{part}_{metric}"
    columns = ["run", key] + sorted({k for e in table.values() for k in e} - {key, "output_dir"}) + ["output_dir"]
    results.write_csv(os.path.join(output_dir, RUNS_CSV), columns, [{"run": k, **e} for k, e in table.items()])
    results.write_results(output_dir, summary)
    summary = results.read_results(output_dir)
    if rows:
        results.plot_run(output_dir, {}, title, suffix=f" (mean of {len(sub_runs)})")
    values = [e.get(key) for e in table.values()]
    results.try_plot(_bar_chart, os.path.join(output_dir, RUNS_PNG), list(table), values, f"{part} {metric}", title)

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
    for run, value in zip(table, values):
        logging.info("  %-6s %s %s", run, key, "?" if value is None else f"{value:.4g}")
    return summary
