"""Run every paper-table row of flags/targets.toml and write RESULTS.md.

    bash reproduce.sh [--quick | --full] [--only copying,recall,babi,ptb]
                      [--data_dir DIR] [--out DIR]
    bash reproduce.sh --full --report_only --out docs/results/full   # render only
    bash reproduce.sh --full --record DIR     # DIR's ended runs become the results of record
    bash reproduce.sh --full --report_only --out docs/results/full --readme README.md

Checkout tooling, like the binaries it runs: each row runs as `python -m tasks.<task>
--flagfile=flags/<file> --output_dir=<out>/<run id>` from this checkout's root. Its
progress lines come from the run's progress.json and its verdicts from results.json
(`tasks.report`), never from the child's log, which goes to <run id>/reproduce.log for
the user. A row whose results.json is finished is not run again, so an interrupted
reproduction continues where it stopped (an unfinished row resumes from its own
checkpoint). The child dies with this process (Linux: PR_SET_PDEATHSIG), and SIGINT,
SIGTERM and SIGHUP are passed on to it. The exit status is non-zero when any row misses
its check.
"""

import ctypes
import ctypes.util
import dataclasses
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from rum_tf.training import results as results_lib
from rum_tf.training import run_folder
from tasks import report

# The checkout this driver belongs to: the binaries (tasks/) and flagfiles (flags/) it runs.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ("copying", "recall", "babi", "ptb")
DATA_TASKS = ("babi", "ptb")

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "CPU scale: the flagfiles under flags/quick/ (the default).")
flags.DEFINE_bool("full", False, "Paper scale: the paper-row flagfiles (a GPU machine).")
flags.DEFINE_list("only", list(TABLES), f"Tables to run, from {', '.join(TABLES)}.")
flags.DEFINE_string("data_dir", None, "Folder with the bAbI and PTB files (else RUM_TF_DATA_DIR or download).")
flags.DEFINE_string("out", None, "Output folder (default results/<quick|full>).")
flags.DEFINE_string("targets", os.path.join(ROOT, "flags", "targets.toml"), "The targets file.")
flags.DEFINE_string("rows", None, "Only the rows whose run id (flagfile path) contains this text.")
flags.DEFINE_string("extra_flags", "", "Flags appended to every row's command (e.g. to shrink a test run).")
flags.DEFINE_float("progress_every_s", 60.0, "At most one progress line per row this often (and its last one).")
flags.DEFINE_bool("report_only", False, "Run nothing: write RESULTS.md from the runs already in --out.")
flags.DEFINE_string(
    "readme",
    None,
    "Also write the tables and plots into this Markdown file, between the lines "
    "'<!-- <scale>-results:begin -->' and '<!-- <scale>-results:end -->' (which it must have).",
)
flags.DEFINE_string(
    "record",
    None,
    "Run nothing: copy every run under this folder that finished or diverged (one <run id> "
    "sub-folder per row, as --out holds them) into docs/results/<scale>/<run id>/, replacing "
    "that row's folder, then write RESULTS.md there.",
)

flags.register_validator("only", lambda v: set(v) <= set(TABLES), f"--only takes tables from {', '.join(TABLES)}")
flags.register_multi_flags_validator(
    ["quick", "full"], lambda f: not (f["quick"] and f["full"]), "choose one of --quick and --full"
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a row: its flagfile's (seed None) or a replica at another --seed."""

    row: report.Row
    scale: str
    seed: int | None = None

    @property
    def run_id(self):
        run_id = self.row.run_id(self.scale)
        return run_id if self.seed is None else report.replica_id(run_id, self.seed)

    @property
    def flags(self):
        """The row's flagfile and the replica's seed: the whole definition of this run."""
        path = os.path.join(ROOT, "flags", self.row.flagfile(self.scale))
        return [f"--flagfile={path}"] + ([] if self.seed is None else [f"--seed={self.seed}"])

    def describe(self):
        return f"flags/{self.row.flagfile(self.scale)}" + ("" if self.seed is None else f" --seed={self.seed}")


def _runs(rows, scale):
    return [Run(r, scale, seed) for r in rows for seed in (None, *r.seeds(scale))]


def _environment(run):
    """The row's environment variables (full scale only) under the caller's: a variable set by the
    caller wins. Returns the child's environment and the variables the row added."""
    added = {k: str(v) for k, v in (run.row.env or {}).items() if k not in os.environ} if run.scale == "full" else {}
    return {**os.environ, **added}, added


def _command(run, run_dir):
    cmd = [sys.executable, "-m", f"tasks.{run.row.task}", *run.flags, f"--output_dir={run_dir}"]
    if FLAGS.data_dir and run.row.task in DATA_TASKS:
        cmd.append(f"--data_dir={FLAGS.data_dir}")
    return cmd + FLAGS.extra_flags.split()


# --------------------------------------------------------------------------- the child process

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_child = None  # the running row's Popen, for the signal handler


def _child_setup():
    """`preexec_fn` of a row's process: its own process group, and death with this process.

    Its own group: a Ctrl-C in the terminal reaches this process only, which passes it
    on once. PR_SET_PDEATHSIG (Linux): the kernel sends the child SIGTERM when this
    process dies, even by SIGKILL, so no row trains on unsupervised beside a rerun.
    """
    parent = os.getpid()  # this process; setup() below runs in the child, between fork and exec
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None

    def setup():
        os.setpgid(0, 0)
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def _forward_signal(signum, frame):
    """Pass SIGINT / SIGTERM / SIGHUP on to the running row, wait for it, then stop."""
    del frame
    if _child is not None and _child.poll() is None:
        _child.send_signal(signum)
        try:
            _child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _child.kill()
            _child.wait()
    print(
        f"reproduce: stopped by {signal.Signals(signum).name}; the same command continues where it stopped",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(128 + signum)


def _run(run, run_dir):
    """Run one row, printing its progress.json as it changes; returns its exit code."""
    global _child
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "reproduce.log")
    cmd = _command(run, run_dir)
    env, added = _environment(run)
    start = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join([f"{k}={v}" for k, v in added.items()] + cmd) + "\n")
        log.flush()
        _child = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup(),
        )
        pid, seen, printed_at, current = _child.pid, None, None, None
        while True:
            try:
                code = _child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            progress = report.read_progress(run_dir)
            # One left by an earlier process (an interrupted session) is not this run's news.
            if progress and progress.get("pid") == pid and progress.get("updated_at") != seen:
                current, seen = progress, progress.get("updated_at")
                due = printed_at is None or time.time() - printed_at >= FLAGS.progress_every_s
                if due or code is not None or progress.get("status") != "running":
                    print("    " + report.progress_line(progress), flush=True)
                    printed_at = time.time()
            if code is not None:
                break
        _child = None
    results = results_lib.read_results(run_dir) if code == 0 else None
    status = {"exit_code": code, "seconds": time.time() - start, "command": cmd, "log": log_path}
    run_folder.atomic_write_text(os.path.join(run_dir, report.STATUS_FILE), _json(status))
    print("    " + report.outcome_line(code, current, results, log_path), flush=True)
    return code


# What a recorded run keeps: small files, exactly as the run wrote them (multitask runs add
# their per-task table). Checkpoints, models, logs and events stay behind.
RECORD_FILES = (
    results_lib.FLAGS_FILE,
    results_lib.RESULTS_FILE,
    results_lib.CURVE_CSV,
    results_lib.CURVE_PNG,
    "runs.csv",
    "runs.png",
)
RECORD_DIR = os.path.join(ROOT, "docs", "results")


# Flags that name where a run read and wrote, or how often it checkpointed: not what it computed.
NOT_THE_RUN = ("output_dir", "data_dir", "checkpoint_every")


def resolved_flags(run):
    """{flag: value} that the row's flagfile (and replica seed) resolves to, as the binary writes them."""
    module = importlib.import_module(f"tasks.{run.row.task}")
    with tempfile.TemporaryDirectory() as tmp:
        return module.APP.parse(["prog", *run.flags, f"--output_dir={tmp}"]).values()


def flag_differences(ran, expected):
    """["--steps=2000 in the run, 100000 in the flagfile", ...] for every flag that defines the run."""
    names = sorted((set(ran) | set(expected)) - set(NOT_THE_RUN))
    return [
        f"--{n}={ran.get(n)} in the run, {expected.get(n)} in the flagfile"
        for n in names
        if ran.get(n) != expected.get(n)
    ]


def record(runs, source, dest):
    """Copy the runs that ended (`ENDED`) from `source`/<run id> to `dest`/<run id>: only those whose resolved
    flags are their row's flagfile (and seed); returns (recorded run ids, refusal lines)."""
    recorded, refused = [], []
    for run in runs:
        run_id = run.run_id
        src = os.path.join(source, run_id)
        if (report.read_results(src) or {}).get("status") not in ENDED:
            continue
        diffs = flag_differences(results_lib.read_results(src).get("flags") or {}, resolved_flags(run))
        if diffs:
            refused.append(
                f"not recorded {src}: it is not a run of {run.describe()} ({'; '.join(diffs[:4])}"
                f"{'; ...' if len(diffs) > 4 else ''})"
            )
            print(refused[-1], flush=True)
            continue
        target = os.path.join(dest, run_id)
        staging = f"{target}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        for name in RECORD_FILES:
            if os.path.exists(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(staging, name))
        if os.path.exists(target):  # a rerun replaces the whole folder
            shutil.rmtree(target)
        os.replace(staging, target)
        recorded.append(run_id)
        results = results_lib.read_results(target)
        if results["status"] == "diverged":
            print(f"recorded {run_id}: diverged at step {(results.get('diverged') or {}).get('step')}", flush=True)
        else:
            print(f"recorded {run_id}: {run.row.metric} = {report.lookup(results, run.row.metric)}", flush=True)
    return recorded, refused


def update_readme(path, scale, outcomes, plots):
    """Replace the block between the file's `<!-- <scale>-results:begin/end -->` lines by the tables."""
    begin, end = f"<!-- {scale}-results:begin -->", f"<!-- {scale}-results:end -->"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise app.UsageError(f"--readme={path} needs one line {begin} and, after it, one line {end}")
    base = os.path.dirname(os.path.abspath(path))
    lines = report.tables_markdown(outcomes, base, heading="####")
    for title, plot in plots:
        lines += [f"![{title}]({os.path.relpath(plot, base)})", ""]
    lines += [f"Verdicts: {report.summary_line(outcomes)}.", ""]
    head, rest = text.split(begin, 1)
    run_folder.atomic_write_text(path, head + begin + "\n" + "\n".join(lines) + end + rest.split(end, 1)[1])


def _json(obj):
    import json

    return json.dumps(obj, indent=2) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    for signum in _FORWARDED:
        signal.signal(signum, _forward_signal)
    scale = "full" if FLAGS.full else "quick"
    default_out = os.path.join(RECORD_DIR, scale) if FLAGS.record else os.path.join(ROOT, "results", scale)
    out_dir = os.path.abspath(FLAGS.out or default_out)
    os.makedirs(out_dir, exist_ok=True)
    selected = [r for r in report.load_targets(FLAGS.targets) if r.table in FLAGS.only]
    if FLAGS.rows:
        selected = [r for r in selected if r.flagfile(scale) and FLAGS.rows in r.run_id(scale)]
    rows = [r for r in selected if r.flagfile(scale)]
    runs = _runs(rows, scale)
    refused = []
    if FLAGS.record:
        if not os.path.isdir(FLAGS.record):
            raise app.UsageError(f"--record={FLAGS.record} is not a folder")
        done, refused = record(runs, FLAGS.record, out_dir)
        print(
            f"recorded {len(done)} run(s) that finished or diverged from {FLAGS.record} into {out_dir}"
            + (f"; refused {len(refused)} whose flags are not their row's" if refused else ""),
            flush=True,
        )
    todo = [r for r in runs if not _finished(os.path.join(out_dir, r.run_id))]
    finished = len(runs) - len(todo)
    if FLAGS.report_only or FLAGS.record:
        print(
            f"{scale} report: {len(rows)} rows in {', '.join(FLAGS.only)}, {finished} finished, none run; "
            f"output in {out_dir}",
            flush=True,
        )
        todo = []
    else:
        print(
            f"{scale} reproduction: {len(rows)} rows in {', '.join(FLAGS.only)}; {finished} already finished; "
            f"output in {out_dir}",
            flush=True,
        )
    durations = []  # (estimated, measured) seconds of the rows run so far
    for i, run in enumerate(todo):
        seed = "" if run.seed is None else f" --seed={run.seed}"
        print(
            f"[{i + 1}/{len(todo)}] {run.row.table}: {run.row.row} ({run.row.flagfile(scale)}{seed}); "
            f"{len(todo) - i - 1} after it; {_time_left([r.row for r in todo[i:]], scale, durations)}",
            flush=True,
        )
        start = time.time()
        _run(run, os.path.join(out_dir, run.run_id))
        durations.append((_estimate(run.row, scale), time.time() - start))
        print(f"    finished in {report.duration(durations[-1][1])}", flush=True)

    outcomes = report.collect(selected, scale, out_dir)
    plots = report.plot_tables(outcomes, out_dir)
    header = f"Scale: {scale}. Produced by `bash reproduce.sh --{scale} --only {','.join(FLAGS.only)}`."
    if FLAGS.record or FLAGS.report_only:
        header = (
            f"Scale: {scale}. Rendered by `bash reproduce.sh --{scale} --report_only` from the runs in this "
            "folder; each row's folder holds its results.json, curve.csv and flags.cfg as the run wrote them."
        )
    path = os.path.join(out_dir, "RESULTS.md")
    run_folder.atomic_write_text(path, report.render(outcomes, out_dir, plots, header))
    if FLAGS.readme:
        update_readme(FLAGS.readme, scale, outcomes, plots)
        print(f"updated the {scale} results in {FLAGS.readme}", flush=True)
    bad = report.failed(outcomes)
    print(f"wrote {path}: {len(outcomes) - len(bad)} of {len(outcomes)} rows without a miss", flush=True)
    for o in bad:
        print(f"  {o.verdict}: {o.row.table} / {o.row.row} {o.detail}".rstrip(), flush=True)
    if refused:
        print(f"reproduce: error: {len(refused)} run(s) not recorded: their flags are not their row's", flush=True)
        return 2
    return 1 if bad else 0


# A diverged run is its flagfile's outcome as much as a finished one: run again, it diverges again
# (resume is exact), and the table shows it as a FAIL instead of "not run".
ENDED = ("finished", "diverged")


def _finished(run_dir):
    results = report.read_results(run_dir)
    return bool(results) and results.get("status") == "finished"


def _estimate(row, scale):
    """Seconds the targets file expects this row to take (0 when it gives none)."""
    return 60.0 * float((row.est_minutes or {}).get(scale, 0.0))


def _time_left(rows, scale, durations):
    """'about N min left': the targets' estimates, scaled by how the rows so far compared."""
    estimates = [_estimate(r, scale) for r in rows]
    measured = [m for _, m in durations]
    if durations and sum(e for e, _ in durations) > 0:
        estimates = [e * sum(measured) / sum(e for e, _ in durations) for e in estimates]
    if not all(estimates):
        if not measured:
            return "time left unknown"
        fill = sum(measured) / len(measured)
        estimates = [e or fill for e in estimates]
    return f"about {report.duration(sum(estimates))} left"


def _main(argv):
    try:
        return main(argv)
    except report.Unreadable as e:
        print(f"reproduce: error: {e}; move it away (the run then counts as unfinished)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(_main)
