"""reproduce.sh end to end on one copying row shrunk to seconds (no real training)."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHRINK = "--steps=2 --eval_every=1 --test_size=8 --batch_size=4 --T=5"


def _reproduce(out):
    cmd = ["bash", "reproduce.sh", "--quick", "--only", "copying", "--rows", "rum_lambda0",
           "--out", str(out), "--extra_flags", SHRINK]
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
    cmd = ["bash", "reproduce.sh", "--quick", "--only", "copying", "--rows", "rum_lambda0", "--record", str(runs),
           "--out", str(recorded)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "recorded 1 finished run(s)" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "[1/" not in result.stdout  # nothing ran
    src, dst = runs / "copying" / "rum_lambda0_T200", recorded / "copying" / "rum_lambda0_T200"
    assert sorted(os.listdir(dst)) == ["curve.csv", "curve.png", "flags.cfg", "results.json"]  # stale.txt replaced
    for name in ("results.json", "curve.csv", "flags.cfg"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    results_md = (recorded / "RESULTS.md").read_text(encoding="utf-8")
    assert "--report_only" in results_md and "[RUM λ=0, T=200](copying/rum_lambda0_T200)" in results_md

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- quick-results:begin -->\nold table\n<!-- quick-results:end -->\nafter\n")
    cmd = ["bash", "reproduce.sh", "--quick", "--only", "copying", "--rows", "rum_lambda0", "--report_only",
           "--out", str(recorded), "--readme", str(readme)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n<!-- quick-results:begin -->\n#### copying")
    assert "[RUM λ=0, T=200](recorded/copying/rum_lambda0_T200)" in text and text.endswith("-->\nafter\n")
    assert "![copying: train cross-entropy / memoryless baseline](recorded/copying.png)" in text
