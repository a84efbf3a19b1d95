"""reproduce.sh end to end on one copying row shrunk to seconds (no real training), and its children."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # each test runs reproduce.sh and a task binary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHRINK = "--steps=2 --eval_every=1 --test_size=8 --batch_size=4 --T=5"


def _reproduce(out):
    cmd = [
        "bash",
        "reproduce.sh",
        "--quick",
        "--only",
        "copying",
        "--rows",
        "rum_lambda0",
        "--out",
        str(out),
        "--extra_flags",
        SHRINK,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_reproduce_writes_results_and_skips_finished_rows(tmp_path):
    first = _reproduce(tmp_path)
    assert "[1/1] copying: RUM λ=0, T=200" in first.stdout, first.stdout + first.stderr[-2000:]
    run_dir = tmp_path / "copying" / "rum_lambda0_T200"
    assert (run_dir / "results.json").exists() and (run_dir / "reproduce.json").exists()
    results_md = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "## copying" in results_md and "RUM λ=0, T=200" in results_md
    assert "quick, 2 steps" in results_md
    # Two steps cannot beat the memoryless baseline: the row fails its check, and the exit
    # status says so.
    assert "| FAIL |" in results_md and first.returncode == 1

    second = _reproduce(tmp_path)
    assert "1 already finished" in second.stdout and "[1/" not in second.stdout
    assert second.returncode == 1


def test_record_copies_finished_runs_exactly_and_renders_without_running(tmp_path):
    runs = tmp_path / "runs"
    assert _reproduce(runs).returncode == 1  # one finished (failing) row to record
    recorded = tmp_path / "recorded"
    (recorded / "copying" / "rum_lambda0_T200").mkdir(parents=True)
    (recorded / "copying" / "rum_lambda0_T200" / "stale.txt").write_text("from an earlier run")
    cmd = [
        "bash",
        "reproduce.sh",
        "--quick",
        "--only",
        "copying",
        "--rows",
        "rum_lambda0",
        "--record",
        str(runs),
        "--out",
        str(recorded),
    ]
    src, dst = runs / "copying" / "rum_lambda0_T200", recorded / "copying" / "rum_lambda0_T200"
    # The run was shrunk (--extra_flags): it is not a run of the row's flagfile, and is refused.
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert f"not recorded {src}: it is not a run of flags/quick/copying/rum_lambda0_T200.cfg (" in result.stdout
    assert "--steps=2 in the run, 800 in the flagfile" in result.stdout
    assert "recorded 0 run(s)" in result.stdout and (dst / "stale.txt").exists()  # nothing copied

    # The same folder as a run of the flagfile would have left it: recorded, exactly.
    from tasks import copying

    summary = json.loads((src / "results.json").read_text())
    flagfile = os.path.join(ROOT, "flags", "quick", "copying", "rum_lambda0_T200.cfg")
    summary["flags"] = copying.APP.parse(["prog", f"--flagfile={flagfile}", f"--output_dir={src}"]).values()
    (src / "results.json").write_text(json.dumps(summary))
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "recorded 1 run(s) that finished or diverged" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "[1/" not in result.stdout  # nothing ran
    assert sorted(os.listdir(dst)) == ["curve.csv", "curve.png", "flags.cfg", "results.json"]  # stale.txt replaced
    for name in ("results.json", "curve.csv", "flags.cfg"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    results_md = (recorded / "RESULTS.md").read_text(encoding="utf-8")
    assert "--report_only" in results_md and "[RUM λ=0, T=200](copying/rum_lambda0_T200)" in results_md

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- quick-results:begin -->\nold table\n<!-- quick-results:end -->\nafter\n")
    cmd = [
        "bash",
        "reproduce.sh",
        "--quick",
        "--only",
        "copying",
        "--rows",
        "rum_lambda0",
        "--report_only",
        "--out",
        str(recorded),
        "--readme",
        str(readme),
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n<!-- quick-results:begin -->\n#### copying")
    assert "[RUM λ=0, T=200](recorded/copying/rum_lambda0_T200)" in text and text.endswith("-->\nafter\n")
    assert "![copying: train cross-entropy / memoryless baseline](recorded/copying.png)" in text

    # A run that diverged is recorded too, as the FAIL it is (rerun, it would diverge again).
    summary.update(status="diverged", steps=1, metrics={}, diverged={"step": 1, "reason": "the training loss is nan"})
    (src / "results.json").write_text(json.dumps(summary))
    cmd[cmd.index("--report_only") : cmd.index("--report_only") + 1] = ["--record", str(runs)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "recorded copying/rum_lambda0_T200: diverged at step 1\n" in result.stdout, result.stdout + result.stderr
    assert (dst / "results.json").read_bytes() == (src / "results.json").read_bytes()
    assert "| FAIL (diverged at step 1) |" in (recorded / "RESULTS.md").read_text(encoding="utf-8")


def test_a_failing_row_prints_its_exit_code_and_log_and_counts_as_crashed(tmp_path):
    cmd = [
        "bash",
        "reproduce.sh",
        "--quick",
        "--only",
        "copying",
        "--rows",
        "rum_lambda0",
        "--out",
        str(tmp_path),
        "--extra_flags",
        SHRINK + " --units=0",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = tmp_path / "copying" / "rum_lambda0_T200" / "reproduce.log"
    code = re.search(rf"exit code (\d+): see {re.escape(str(log))}$", result.stdout, re.M)
    assert code and code.group(1) != "0", result.stdout + result.stderr[-2000:]
    assert "--units" in log.read_text()  # the binary's own one-line refusal stays in the log
    assert f"| crashed (exit code {code.group(1)}; see " in (tmp_path / "RESULTS.md").read_text()
    assert result.returncode == 1


# ---------------------------------------------------------------------------- the children die with reproduce

LONG = "--steps=1000000 --eval_every=1000 --test_size=8 --batch_size=2 --units=2 --T=1"


def _children(pid):
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_the_row_being_trained_dies_with_reproduce(tmp_path, signum):
    """kill -9 (or SIGTERM) of reproduce's process ends its child within seconds; no orphan trains on."""
    cmd = [
        "bash",
        "reproduce.sh",
        "--quick",
        "--only",
        "copying",
        "--rows",
        "rum_lambda0",
        "--out",
        str(tmp_path),
        "--extra_flags",
        LONG,
    ]
    parent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    child = None
    try:
        deadline = time.monotonic() + 120
        while child is None and time.monotonic() < deadline and parent.poll() is None:
            for pid in _children(parent.pid):  # reproduce.sh execs python: the parent's pid is reproduce's
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"tasks.copying" in f.read():
                            child = pid
                except OSError:  # a short-lived child (reproduce's own checks) ended since it was listed
                    continue
            time.sleep(0.2)
        assert child is not None, "reproduce never started its row"
        os.kill(parent.pid, signum)
        code = parent.wait(timeout=90)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"the row (pid {child}) outlived reproduce"
        if signum == signal.SIGTERM:  # passed on, waited for, then reproduce stops with 128 + 15
            assert code == 128 + signal.SIGTERM and "stopped by SIGTERM" in parent.stdout.read()
    finally:
        for pid in (parent.pid, child):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=30)


# A stand-in for a task binary: it writes progress.json as the binaries do (contract: pid,
# status, step, steps, metrics, message, updated_at), then diverges at step 2.
_FAKE_ROW = """
import json, os, sys, time
out = sys.argv[1]
def write(name, data):
    with open(os.path.join(out, name + ".tmp"), "w") as f:
        json.dump(data, f)
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
base = {"task": "copying", "steps": 4, "eta_s": 2.0, "steps_per_s": 1.0, "message": None, "pid": os.getpid()}
write("progress.json", dict(base, status="running", step=1, metrics={"loss": 0.5}, updated_at="t1"))
time.sleep(2.5)
message = "the loss is nan at step 2: stopped; see --learning_rate"
write("progress.json", dict(base, status="diverged", step=2, metrics={"loss": float("nan")}, message=message,
                            updated_at="t2"))
write("results.json", {"status": "diverged", "steps": 2, "metrics": {}})
print("a log line reproduce must not echo")
sys.exit(1)
"""


def test_progress_lines_failure_message_and_verdict_come_from_the_run_files(tmp_path):
    prelude = (
        f"import sys\nfrom absl import app\nfrom tasks import reproduce as r\n"
        f"r._command = lambda run, run_dir: [sys.executable, '-c', {_FAKE_ROW!r}, run_dir]\n"
        f"sys.argv = ['reproduce', '--quick', '--only', 'copying', '--rows', 'rum_lambda0', "
        f"'--progress_every_s', '0', '--out', {str(tmp_path)!r}]\napp.run(r.main)\n"
    )
    result = subprocess.run([sys.executable, "-c", prelude], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert "    step 1/4 (25%) | loss 0.5 | 1 steps/s | ETA 2 s\n" in out, out + result.stderr[-2000:]
    assert "    step 2/4 (50%) | loss nan | 1 steps/s | diverged\n" in out
    log = tmp_path / "copying" / "rum_lambda0_T200" / "reproduce.log"
    assert f"    exit code 1: the loss is nan at step 2: stopped; see --learning_rate (log: {log})\n" in out
    assert "must not echo" not in out and "must not echo" in log.read_text()
    assert "| FAIL (diverged at step 2) |" in (tmp_path / "RESULTS.md").read_text() and result.returncode == 1


def test_a_rows_environment_reaches_its_full_runs_unless_the_caller_set_it(monkeypatch):
    from tasks import report, reproduce

    row = report.Row(
        table="t", row="r", task="copying", metric="m", full="f.cfg", quick="q.cfg", env={"RUM_TF_TEST_VAR": "1"}
    )
    monkeypatch.delenv("RUM_TF_TEST_VAR", raising=False)
    env, added = reproduce._environment(reproduce.Run(row, "full"))
    assert added == {"RUM_TF_TEST_VAR": "1"} and env["RUM_TF_TEST_VAR"] == "1" and env["PATH"] == os.environ["PATH"]
    assert reproduce._environment(reproduce.Run(row, "quick"))[1] == {}  # quick runs: as the caller has it
    monkeypatch.setenv("RUM_TF_TEST_VAR", "0")
    env, added = reproduce._environment(reproduce.Run(row, "full"))
    assert added == {} and env["RUM_TF_TEST_VAR"] == "0"
    rows = report.load_targets(os.path.join(ROOT, "flags", "targets.toml"))
    lambda1 = next(r for r in rows if r.full == "copying/rum_lambda1_eta2_T200.cfg")
    assert lambda1.env == {"TF_ENABLE_ONEDNN_OPTS": "1"}
