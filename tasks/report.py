"""The paper's tables from finished runs: targets, verdicts and RESULTS.md; the run-file lines reproduce prints.

The targets file (flags/targets.toml) lists every paper-table row once:

    [[rows]]
    table = "copying"                          # which table of RESULTS.md it belongs to
    row = "RUM λ=0, T=200"                     # its name in the paper's table
    task = "copying"                           # python -m tasks.<task>
    full = "copying/rum_lambda0_T200.cfg"      # flagfile of the paper-scale run
    quick = "quick/copying/rum_lambda0.cfg"    # flagfile of the CPU-scale run
    metric = "metrics.test.loss"               # a dotted path into results.json
    published = "solved (loss -> ~0)"          # the paper's number (text or number)
    full_check = { max = 0.01 }                # what "reproduced" means at full scale
    quick_check = { max = 0.5, ref = "task_results.memoryless_baseline" }
    note = "..."                               # optional: why that check
    est_minutes = { quick = 1.5, full = 300 }  # optional: expected run time, for the ETA
    full_seeds = [1, 2]                        # optional: replicas at these --seed values (full scale),
                                               # in <run id>_seed<k>/; the table says at how many seeds it holds
    also = ["metrics.valid.bpc"]               # optional: more results.json values shown beside the metric
    env = { TF_ENABLE_ONEDNN_OPTS = "1" }      # optional: environment of the full runs, where unset

A check is `{max = x}` (value <= x), `{min = x}` (value >= x), optionally with
`ref = "path"` to scale x by another results.json value (e.g. the copying
baseline), or `{}` for rows that are only reported. A row whose check is absent
for the chosen scale is reported without a verdict.
"""

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from rum_tf.training import results as results_lib

SCALES = ("quick", "full")
STATUS_FILE = "reproduce.json"  # written by tasks.reproduce next to each run's results.json
PROGRESS_FILE = "progress.json"  # written by the binaries (rum_tf.training.results.PROGRESS_FILE)

PASS, FAIL, MISSING, CRASHED, REPORTED = "pass", "FAIL", "missing", "crashed", "reported"


@dataclasses.dataclass(frozen=True)
class Row:
    table: str
    row: str
    task: str
    metric: str
    full: str | None = None
    quick: str | None = None
    published: Any = None
    full_check: Mapping[str, Any] | None = None
    quick_check: Mapping[str, Any] | None = None
    note: str = ""
    est_minutes: Mapping[str, float] | None = None  # {"quick": m, "full": m}, for the ETA
    full_seeds: tuple = ()  # replicas of the full-scale run at these seeds
    also: tuple = ()  # dotted paths of more results.json values shown beside the value
    env: Mapping[str, str] | None = None  # environment variables of the full run, unless the caller sets them

    def flagfile(self, scale):
        return self.quick if scale == "quick" else self.full

    def check(self, scale):
        return self.quick_check if scale == "quick" else self.full_check

    def run_id(self, scale):
        """The run's folder under the output dir: its flagfile path without 'quick/' and '.cfg'."""
        path = self.flagfile(scale)
        if path is None:
            return None
        path = path[len("quick/") :] if path.startswith("quick/") else path
        return path[: -len(".cfg")] if path.endswith(".cfg") else path

    def seeds(self, scale):
        """The --seed of each replica run at this scale (the flagfile's own run not counted)."""
        return tuple(self.full_seeds) if scale == "full" else ()


def replica_id(run_id, seed):
    """The folder of the replica at `seed` of the run `run_id`."""
    return f"{run_id}_seed{seed}"


def load_targets(path):
    """The rows of a targets file, checked for the fields every row needs."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    rows = []
    fields = {f.name for f in dataclasses.fields(Row)}
    for i, raw in enumerate(data.get("rows", [])):
        unknown = set(raw) - fields
        missing = {"table", "row", "task", "metric"} - set(raw)
        if unknown or missing:
            raise ValueError(
                f"{path}: row {i + 1} ({raw.get('row')!r}): unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        rows.append(Row(**raw))
    return rows


def lookup(results, path):
    """results["a"]["b"] for path "a.b", or None when any part is absent."""
    value = results
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclasses.dataclass
class Outcome:
    row: Row
    scale: str
    verdict: str
    value: float | None = None
    threshold: str = ""
    detail: str = ""
    results: Mapping[str, Any] | None = None
    run_dir: str | None = None
    replicas: tuple = ()  # the Outcomes of the row's runs at its other seeds


def _as_float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def judge(row, scale, results, status=None, run_dir=None, progress=None):
    """The verdict of one row from its results.json (None if absent), run status and progress.json."""
    outcome = Outcome(row, scale, MISSING, results=results, run_dir=run_dir)
    if results is not None and results.get("status") == "diverged":
        step = (results.get("diverged") or {}).get("step")  # {step, message}, as the harness writes it
        if step is None and (progress or {}).get("status") == "diverged":
            step = progress.get("step")
        step = results.get("steps") if step is None else step
        outcome.verdict, outcome.detail = FAIL, f"diverged at step {step}" if step is not None else "diverged"
        return outcome
    if results is None or results.get("status") != "finished":
        message = (progress or {}).get("message")
        if status is not None and status.get("exit_code", 0) != 0:
            outcome.verdict = CRASHED
            why = message or f"see {status.get('log', 'its log')}"
            outcome.detail = f"exit code {status['exit_code']}; {why}"
        elif progress is not None and progress.get("status") not in (None, "finished"):
            state = "unfinished" if progress["status"] == "running" else progress["status"]  # running, or killed
            outcome.detail = f"{state} at step {progress.get('step')}" + (f": {message}" if message else "")
        else:
            outcome.detail = "not run" if status is None else "no results.json"
        return outcome
    outcome.value = _as_float(lookup(results, row.metric))
    check = row.check(scale)
    if not check:
        outcome.verdict = REPORTED
        return outcome
    bound_key = "max" if "max" in check else "min"
    bound = float(check[bound_key])
    label = f"{bound:g}"
    if check.get("ref"):
        ref = _as_float(lookup(results, check["ref"]))
        if ref is None:
            outcome.verdict, outcome.detail = FAIL, f"reference {check['ref']} absent"
            return outcome
        label = f"{bound:g} × {check['ref'].split('.')[-1]} = {bound * ref:.4g}"
        bound *= ref
    outcome.threshold = ("≤ " if bound_key == "max" else "≥ ") + label
    if outcome.value is None:
        outcome.verdict, outcome.detail = FAIL, f"{row.metric} absent or not finite"
    elif (outcome.value <= bound) if bound_key == "max" else (outcome.value >= bound):
        outcome.verdict = PASS
    else:
        outcome.verdict = FAIL
    return outcome


def collect(rows, scale, out_dir):
    """Outcomes of every row that has a flagfile at this scale, reading `out_dir/<run id>/`."""
    outcomes = []
    for row in rows:
        run_id = row.run_id(scale)
        if run_id is None:
            continue
        outcome = _judge_folder(row, scale, os.path.join(out_dir, run_id))
        outcome.replicas = tuple(
            _judge_folder(row, scale, os.path.join(out_dir, replica_id(run_id, seed))) for seed in row.seeds(scale)
        )
        outcomes.append(outcome)
    return outcomes


def _judge_folder(row, scale, run_dir):
    return judge(row, scale, read_results(run_dir), read_status(run_dir), run_dir, read_progress(run_dir))


class Unreadable(ValueError):
    """A results.json that is not JSON; the message is one line naming it."""


def read_results(run_dir):
    """results.json of a run folder, None where it has none; `Unreadable` when it cannot be read."""
    path = os.path.join(run_dir, results_lib.RESULTS_FILE)
    try:
        return results_lib.read_json(path) if os.path.isdir(run_dir) else None
    except ValueError as e:
        raise Unreadable(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def read_status(run_dir):
    """The reproduce.json that tasks.reproduce left in run_dir, or None."""
    return results_lib.read_json(os.path.join(run_dir, STATUS_FILE))


def read_progress(run_dir):
    """The progress.json in run_dir, or None (absent, or unreadable)."""
    try:
        return results_lib.read_json(os.path.join(run_dir, PROGRESS_FILE))
    except (OSError, ValueError):
        return None


def progress_line(progress):
    """E.g. "step 1,200/20,000 (6%) | loss 0.123 | 3.2 steps/s | ETA 1.2 h", from a progress.json."""
    step, steps = progress.get("step") or 0, progress.get("steps") or 0
    parts = [f"step {step:,}/{steps:,}" + (f" ({100 * step / steps:.0f}%)" if steps else "")]
    metrics = progress.get("metrics") or {}
    if metrics:
        parts.append(" ".join(f"{k} {_fmt(v)}" for k, v in metrics.items()))  # None: a non-finite value
    if progress.get("steps_per_s"):
        parts.append(f"{progress['steps_per_s']:.3g} steps/s")
    if progress.get("eta_s") is not None and progress.get("status") == "running":
        parts.append(f"ETA {duration(progress['eta_s'])}")
    if progress.get("status") not in (None, "running"):
        parts.append(progress["status"])
    return " | ".join(parts)


def outcome_line(code, progress, results, log_path):
    """What a row's process ended with: its test metrics, or the exit code and why."""
    if code == 0:
        test = ((results or {}).get("metrics") or {}).get("test") or {}
        return "test: " + " ".join(f"{k} {v:.4g}" for k, v in test.items()) if test else "finished"
    message = (progress or {}).get("message")
    if message and (progress or {}).get("status") in ("failed", "diverged", "stopped"):
        return f"exit code {code}: {message} (log: {log_path})"
    return f"exit code {code}: see {log_path}"


def duration(seconds):
    """E.g. "45 s", "3.5 min", "2.1 h"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _fmt(value):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _scale_text(outcome):
    r = outcome.results
    if not r:
        return outcome.scale
    steps = f"{r.get('steps', '?')} steps"
    if r.get("stopped"):  # --stop_when ended it before --steps
        steps += f" (stopped: {r['stopped'].get('rule', '?')})"
    parts = [outcome.scale, steps]
    if r.get("wall_time_s") is not None:
        parts.append(f"{float(r['wall_time_s']) / 60:.1f} min")
    return ", ".join(parts)


def _trained_on(outcome):
    """E.g. "AMD EPYC (avx2), 1 core; tensorflow 2.21.0 (oneDNN on), keras 3.15.1": the machine and
    versions of a run (the vector extension and oneDNN only where results.json records them)."""
    r = outcome.results or {}
    machine, versions = r.get("machine") or {}, r.get("versions") or {}
    parts = []
    if machine:
        cores = machine.get("cores_used")
        simd = f" ({machine['simd']})" if machine.get("simd") else ""  # absent in runs recorded before it
        parts.append(f"{machine.get('cpu', '?')}{simd}, {cores} core{'' if cores == 1 else 's'}")
    devices = [d for d in r.get("devices") or [] if not str(d).upper().startswith("CPU")]
    if devices:
        parts.append(", ".join(devices))
    backend = r.get("backend")
    named = [f"{k} {versions[k]}" for k in (backend, "keras") if k and k in versions]
    if backend == "tensorflow" and backend in versions and r.get("onednn") is not None:
        named[0] += f" (oneDNN {'on' if r['onednn'] else 'off'})"  # named[0] is the backend's entry
    if named:
        parts.append(", ".join(named))
    return "; ".join(parts) or "—"


def _code(outcome):
    """The commit that ran a row ("abc1234", "+ changes" where its tree was not clean), or "—" for runs
    recorded before results.json named it."""
    code = (outcome.results or {}).get("code")
    if not code or not code.get("commit"):
        return "—"
    return code["commit"][:7] + ("" if code.get("clean") else " + changes")


def seeds_text(outcome):
    """E.g. "holds at 3 of 3 seeds, 0.9985–0.9991": the row's verdict over its seeds and the range of its
    metric over the finished ones; "" for a row without replicas."""
    if not outcome.replicas:
        return ""
    runs = [outcome, *outcome.replicas]
    done = [o for o in runs if o.verdict not in (MISSING, CRASHED)]
    values = [o.value for o in done if o.value is not None]
    spread = "" if not values else f", {_fmt(min(values))}" + (f"–{_fmt(max(values))}" if len(set(values)) > 1 else "")
    finished = "" if len(done) == len(runs) else " finished"
    waiting = f"; {len(runs) - len(done)} of {len(runs)} not finished" if finished else ""
    if outcome.row.check(outcome.scale):
        held = sum(o.verdict == PASS for o in done)
        return f"holds at {held} of {len(done)}{finished} seeds{spread}{waiting}"
    return f"{len(done)}{finished} seeds{spread}{waiting}"


def tables_markdown(outcomes, base_dir, heading="##"):
    """The Markdown tables of `outcomes`, one per paper table, with run links relative to base_dir."""
    lines = []
    tables = []
    for o in outcomes:
        if o.row.table not in tables:
            tables.append(o.row.table)
    # Full-scale rows ran at different times, on machines worth naming; quick rows run together.
    full = any(o.scale == "full" for o in outcomes)
    for table in tables:
        lines += [
            f"{heading} {table}",
            "",
            "| row | published | ours | metric | check | scale | verdict |" + (" trained on | code |" if full else ""),
            "|---|---|---|---|---|---|---|" + ("---|---|" if full else ""),
        ]
        for o in (o for o in outcomes if o.row.table == table):
            verdict = o.verdict if not o.detail else f"{o.verdict} ({o.detail})"
            run_link = o.row.row
            if o.run_dir and o.results:
                run_link = f"[{o.row.row}]({os.path.relpath(o.run_dir, base_dir)})"
            ours = _fmt(o.value) + (f" ({seeds_text(o)})" if o.replicas else "") + also_text(o)
            lines.append(
                f"| {run_link} | {_fmt(o.row.published)} | {ours} | {o.row.metric.split('.', 1)[-1]} "
                f"| {o.threshold or '—'} | {_scale_text(o)} | {verdict} |"
                + (f" {_trained_on(o) if o.results else '—'} | {_code(o)} |" if full else "")
            )
        notes = [f"- {o.row.row}: {o.row.note}" for o in outcomes if o.row.table == table and o.row.note]
        lines += [""] + notes + ([""] if notes else [])
    return lines


def also_text(outcome):
    """E.g. " (valid.bpc 1.61)": the row's `also` values of a finished run, named by their path."""
    if outcome.value is None or not outcome.row.also:
        return ""
    parts = [f"{path.split('.', 1)[-1]} {_fmt(_as_float(lookup(outcome.results, path)))}" for path in outcome.row.also]
    return f" ({', '.join(parts)})"


def summary_line(outcomes):
    """E.g. "pass: 3, missing: 20": how many rows got each verdict."""
    counts = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    return ", ".join(f"{v}: {n}" for v, n in sorted(counts.items()))


def render(outcomes, out_dir, plots=(), header=""):
    """RESULTS.md text: one table per paper table, then the plots (paths relative to out_dir)."""
    lines = ["# Results", ""]
    if header:
        lines += [header, ""]
    lines += [
        "Each row: the paper's number, ours, the scale it ran at, and the verdict of the check in",
        "`flags/targets.toml` (quick scale checks the claim qualitatively; full scale checks the",
        "number within its tolerance). Verdicts: pass, FAIL, missing (not run), crashed, reported",
        "(no check at this scale).",
        "",
    ]
    lines += tables_markdown(outcomes, out_dir, heading="##")
    if plots:
        lines += ["## Learning curves", ""]
        for title, path in plots:
            lines += [f"### {title}", "", f"![{title}]({os.path.relpath(path, out_dir)})", ""]
    lines += ["## Summary", "", summary_line(outcomes), ""]
    return "\n".join(lines)


def failed(outcomes):
    """Rows that miss their check (FAIL, missing or crashed); 'reported' rows never fail."""
    return [o for o in outcomes if o.verdict in (FAIL, MISSING, CRASHED)]


# Per table: the curve.csv column its combined plot draws, the y label, and a results.json
# value to divide by (the copying rows ran at different T, so their losses are drawn relative
# to their own memoryless baseline, which is then the line y = 1).
PLOTS = {
    "copying": ("loss", "train cross-entropy / memoryless baseline", "task_results.memoryless_baseline"),
    "recall": ("val_accuracy", "validation accuracy", None),
    "babi": ("val_accuracy", "validation accuracy", None),
    "ptb": ("val_bpc", "validation BPC", None),
}
# Reference lines of a table's plot (label, y), as the paper draws them.
PLOT_LINES = {"recall": ("chance (10 values)", 0.1)}


def plot_tables(outcomes, out_dir):
    """One PNG per table overlaying its rows' curves; returns [(title, path)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for table, (column, label, divide_by) in PLOTS.items():
        curves = []
        for o in (o for o in outcomes if o.row.table == table and o.run_dir):
            scale = _as_float(lookup(o.results or {}, divide_by)) if divide_by else 1.0
            rows = results_lib.read_curve(os.path.join(o.run_dir, results_lib.CURVE_CSV))
            points = [(r["step"], r[column] / scale) for r in rows if column in r and scale]
            if points:
                run_t = lookup(o.results or {}, "task_results.T")
                curves.append((o, points, o.row.row + (f" [run at T={run_t}]" if run_t is not None else "")))
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for _, points, name in curves:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
        if divide_by:
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="memoryless baseline")
            ax.set_ylim(0, 2.0)
        if table in PLOT_LINES:
            line_label, y = PLOT_LINES[table]
            ax.axhline(y, color="grey", linestyle=":", linewidth=1, label=line_label)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
        ax.set_title(f"{table} ({curves[0][0].scale} scale)")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{table}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append((f"{table}: {label}", path))
    return made
