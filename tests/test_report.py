"""The RESULTS.md renderer and verdict logic, on made-up runs (no training)."""

import json
import os

import pytest

from tasks import report

TARGETS = """
[[rows]]
table = "copying"
row = "RUM"
task = "copying"
quick = "quick/copying/rum.cfg"
full = "copying/rum.cfg"
metric = "metrics.test.loss"
published = "solved"
quick_check = { max = 0.5, ref = "task_results.memoryless_baseline" }
full_check = { max = 0.01 }

[[rows]]
table = "copying"
row = "LSTM"
task = "copying"
quick = "quick/copying/lstm.cfg"
metric = "metrics.test.loss"
quick_check = { min = 0.9, ref = "task_results.memoryless_baseline" }

[[rows]]
table = "recall"
row = "RUM T=30"
task = "recall"
quick = "quick/recall/rum.cfg"
metric = "metrics.test.accuracy"
published = 1.0
quick_check = { min = 0.5 }

[[rows]]
table = "recall"
row = "GRU T=30"
task = "recall"
quick = "quick/recall/gru.cfg"
metric = "metrics.test.accuracy"

[[rows]]
table = "ptb"
row = "FS-RUM-2"
task = "ptb"
quick = "quick/ptb/fs_rum2.cfg"
metric = "metrics.test.bpc"
published = 1.189
quick_check = { max = 3.0 }
"""


def _write_run(
    out, run_id, metrics=None, task_results=None, status="finished", exit_code=None, progress=None, steps=100
):
    run_dir = os.path.join(out, run_id)
    os.makedirs(run_dir, exist_ok=True)
    if progress is not None:  # the binaries' progress.json (rum_tf.training.results.PROGRESS_FILE)
        with open(os.path.join(run_dir, report.PROGRESS_FILE), "w") as f:
            json.dump(
                {
                    "task": "copying",
                    "steps": 400,
                    "eta_s": None,
                    "steps_per_s": 2.0,
                    "metrics": {},
                    "message": None,
                    "pid": 1,
                    "updated_at": "2026-11-30T12:00:00+00:00",
                    **progress,
                },
                f,
            )
    if metrics is not None:
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(
                {
                    "status": status,
                    "steps": steps,
                    "wall_time_s": 90.0,
                    "metrics": metrics,
                    "task_results": task_results or {},
                },
                f,
            )
        with open(os.path.join(run_dir, "curve.csv"), "w") as f:
            f.write("step,loss,val_accuracy\n10,0.5,0.2\n20,0.3,0.4\n")
    if exit_code is not None:
        with open(os.path.join(run_dir, report.STATUS_FILE), "w") as f:
            json.dump({"exit_code": exit_code, "log": "reproduce.log"}, f)


@pytest.fixture
def targets(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(TARGETS, encoding="utf-8")
    return report.load_targets(str(path))


def test_verdicts_pass_fail_missing_crashed_reported(targets, tmp_path):
    out = str(tmp_path / "out")
    base = {"memoryless_baseline": 0.2}
    _write_run(out, "copying/rum", {"test": {"loss": 0.05}}, base, exit_code=0)  # 0.05 <= 0.1: pass
    _write_run(out, "copying/lstm", {"test": {"loss": 0.1}}, base, exit_code=0)  # 0.1 < 0.18: FAIL
    _write_run(out, "recall/gru", {"test": {"accuracy": 0.3}}, exit_code=0)  # no check: reported
    _write_run(out, "ptb/fs_rum2", exit_code=1)  # crashed, no results.json
    outcomes = {o.row.row: o for o in report.collect(targets, "quick", out)}
    assert outcomes["RUM"].verdict == report.PASS and outcomes["RUM"].value == 0.05
    assert outcomes["RUM"].threshold == "≤ 0.5 × memoryless_baseline = 0.1"
    assert outcomes["LSTM"].verdict == report.FAIL
    assert outcomes["RUM T=30"].verdict == report.MISSING
    assert outcomes["GRU T=30"].verdict == report.REPORTED
    assert outcomes["FS-RUM-2"].verdict == report.CRASHED
    assert [o.row.row for o in report.failed(outcomes.values())] == ["LSTM", "RUM T=30", "FS-RUM-2"]


def test_full_scale_uses_full_checks_and_skips_rows_without_full_flagfile(targets, tmp_path):
    out = str(tmp_path / "out")
    _write_run(out, "copying/rum", {"test": {"loss": 0.02}}, exit_code=0)
    outcomes = report.collect(targets, "full", out)
    assert [o.row.row for o in outcomes] == ["RUM"]
    assert outcomes[0].verdict == report.FAIL and outcomes[0].threshold == "≤ 0.01"


def test_unfinished_or_non_finite_results_do_not_pass(targets, tmp_path):
    out = str(tmp_path / "out")
    _write_run(out, "recall/rum", {"test": {"accuracy": "nan"}}, exit_code=0)
    _write_run(out, "copying/rum", {"test": {"loss": 0.0}}, {"memoryless_baseline": 0.2}, status="running")
    outcomes = {o.row.row: o for o in report.collect(targets, "quick", out)}
    assert outcomes["RUM T=30"].verdict == report.FAIL
    assert outcomes["RUM"].verdict == report.MISSING


def test_render_has_a_table_per_paper_table_and_the_plots(targets, tmp_path):
    out = str(tmp_path / "out")
    _write_run(out, "copying/rum", {"test": {"loss": 0.05}}, {"memoryless_baseline": 0.2, "T": 10}, exit_code=0)
    _write_run(out, "ptb/fs_rum2", exit_code=2)
    outcomes = report.collect(targets, "quick", out)
    plots = report.plot_tables(outcomes, out)
    assert [t for t, _ in plots] == ["copying: train cross-entropy / memoryless baseline"]  # the only curves
    text = report.render(outcomes, out, plots, header="Scale: quick.")
    assert text.count("\n## ") >= 3  # copying, recall, ptb (+ curves, summary)
    assert "| [RUM](copying/rum) | solved | 0.05 | test.loss | ≤ 0.5 × memoryless_baseline = 0.1 |" in text
    assert "crashed (exit code 2; see reproduce.log)" in text
    assert "| RUM T=30 | 1 | — |" in text and "missing (not run)" in text
    assert os.path.exists(os.path.join(out, "copying.png"))


def test_bad_targets_file_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[rows]]\ntable = "x"\nrow = "y"\ntask = "copying"\nmetrc = "a"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown .*metrc.*missing .*metric"):
        report.load_targets(str(path))


def _render_full_copying_run(targets, tmp_path, **fields):
    """The full-scale report of one passing copying run whose results.json also has `fields`."""
    out = str(tmp_path / "out")
    _write_run(out, "copying/rum", {"test": {"loss": 0.005}}, {"memoryless_baseline": 0.0945})
    path = os.path.join(out, "copying/rum", "results.json")
    with open(path) as f:
        summary = json.load(f)
    summary.update(fields)
    with open(path, "w") as f:
        json.dump(summary, f)
    return report.render(report.collect(targets, "full", out), out)


def test_full_scale_table_names_machine_versions_and_early_stops(targets, tmp_path):
    text = _render_full_copying_run(
        targets,
        tmp_path,
        steps=7300,
        stopped={"step": 7300, "rule": "loss<=0.00945:5"},
        backend="tensorflow",
        devices=["CPU:0"],
        machine={"cpu": "AMD EPYC", "cores_used": 1},
        versions={"tensorflow": "2.21.0", "keras": "3.15.1", "jax": "0.10.2"},
    )
    assert "| scale | verdict | trained on |" in text
    assert (
        "| full, 7300 steps (stopped: loss<=0.00945:5), 1.5 min | pass | AMD EPYC, 1 core; "
        "tensorflow 2.21.0, keras 3.15.1 |"
    ) in text


def test_trained_on_names_the_vector_extension_and_onednn_where_recorded(targets, tmp_path):
    text = _render_full_copying_run(
        targets,
        tmp_path,
        backend="tensorflow",
        onednn=True,
        machine={"cpu": "AMD EPYC", "simd": "avx2", "cores_used": 1},
        versions={"tensorflow": "2.21.0", "keras": "3.15.1"},
    )
    assert "| AMD EPYC (avx2), 1 core; tensorflow 2.21.0 (oneDNN on), keras 3.15.1 |" in text


def test_diverged_failed_and_unfinished_runs_say_so_from_their_files(targets, tmp_path):
    out = str(tmp_path / "out")
    base = {"memoryless_baseline": 0.2}
    # Diverged: a FAIL naming the step, whatever its (NaN-free) metrics say.
    _write_run(
        out,
        "copying/rum",
        {"test": {"loss": 0.01}},
        base,
        status="diverged",
        steps=250,
        exit_code=1,
        progress={"status": "diverged", "step": 250, "message": "the loss is nan at step 250"},
    )
    _write_run(out, "copying/lstm", {"train": {"loss": 1.0}}, base, status="diverged", steps=300)  # no progress
    path = os.path.join(out, "copying/lstm", "results.json")
    with open(path) as f:
        summary = json.load(f)
    with open(path, "w") as f:  # the harness' own record of where it diverged wins over "steps"
        json.dump(dict(summary, diverged={"step": 280, "message": "the loss is inf"}), f)
    _write_run(
        out,
        "recall/rum",
        exit_code=1,
        progress={"status": "failed", "step": 0, "message": "No space left on device: /runs/x"},
    )
    _write_run(out, "ptb/fs_rum2", progress={"status": "running", "step": 120})  # killed, or still running
    outcomes = {o.row.row: o for o in report.collect(targets, "quick", out)}
    assert (outcomes["RUM"].verdict, outcomes["RUM"].detail) == (report.FAIL, "diverged at step 250")
    assert (outcomes["LSTM"].verdict, outcomes["LSTM"].detail) == (report.FAIL, "diverged at step 280")
    assert outcomes["RUM T=30"].verdict == report.CRASHED
    assert outcomes["RUM T=30"].detail == "exit code 1; No space left on device: /runs/x"
    assert (outcomes["FS-RUM-2"].verdict, outcomes["FS-RUM-2"].detail) == (report.MISSING, "unfinished at step 120")
    text = report.render(list(outcomes.values()), out)
    assert "| FAIL (diverged at step 250) |" in text


def test_progress_and_outcome_lines_come_from_the_run_files():
    progress = {
        "task": "copying",
        "status": "running",
        "step": 1200,
        "steps": 20000,
        "eta_s": 5400.0,
        "steps_per_s": 3.25,
        "metrics": {"loss": 0.12345, "val_accuracy": 0.5},
        "message": None,
    }
    assert report.progress_line(progress) == (
        "step 1,200/20,000 (6%) | loss 0.1235 val_accuracy 0.5 | 3.25 steps/s | ETA 1.5 h"
    )
    diverged = dict(
        progress,
        status="diverged",
        step=250,
        eta_s=None,
        metrics={"loss": None},  # NaN: null
        message="the loss is nan",
    )
    assert report.progress_line(diverged) == "step 250/20,000 (1%) | loss — | 3.25 steps/s | diverged"
    assert (
        report.outcome_line(1, diverged, None, "x/reproduce.log")
        == "exit code 1: the loss is nan (log: x/reproduce.log)"
    )
    assert report.outcome_line(2, None, None, "x/reproduce.log") == "exit code 2: see x/reproduce.log"
    assert report.outcome_line(1, progress, None, "x/reproduce.log") == "exit code 1: see x/reproduce.log"
    finished = {"metrics": {"test": {"loss": 0.0123456, "accuracy": 0.99}}}
    assert report.outcome_line(0, None, finished, "x") == "test: loss 0.01235 accuracy 0.99"


def test_read_progress_tolerates_a_missing_or_unreadable_file(tmp_path):
    assert report.read_progress(str(tmp_path / "absent")) is None
    (tmp_path / report.PROGRESS_FILE).write_text("{not json")
    assert report.read_progress(str(tmp_path)) is None
    (tmp_path / report.PROGRESS_FILE).write_text('{"status": "running", "step": 3}')
    assert report.read_progress(str(tmp_path)) == {"status": "running", "step": 3}


def test_replicas_at_other_seeds_and_the_commit_are_in_the_full_table(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(
        TARGETS.replace("full_check = { max = 0.01 }", "full_check = { max = 0.01 }\nfull_seeds = [1, 2]", 1),
        encoding="utf-8",
    )
    rows = report.load_targets(str(path))
    out = str(tmp_path / "out")
    for run_id, loss in (("copying/rum", 0.004), ("copying/rum_seed1", 0.006), ("copying/rum_seed2", 0.02)):
        _write_run(out, run_id, {"test": {"loss": loss}})
    with open(os.path.join(out, "copying/rum", "results.json")) as f:
        summary = json.load(f)
    summary["code"] = {"commit": "c6624df0123456789", "clean": True}
    with open(os.path.join(out, "copying/rum", "results.json"), "w") as f:
        json.dump(summary, f)
    (outcome,) = [o for o in report.collect(rows, "full", out) if o.row.row == "RUM"]
    assert [r.verdict for r in outcome.replicas] == [report.PASS, report.FAIL]
    assert report.seeds_text(outcome) == "holds at 2 of 3 seeds, 0.004–0.02"
    text = report.render(report.collect(rows, "full", out), out)
    assert "| 0.004 (holds at 2 of 3 seeds, 0.004–0.02) |" in text and "| c6624df |" in text

    os.remove(os.path.join(out, "copying/rum_seed2", "results.json"))  # a replica still running
    (outcome,) = [o for o in report.collect(rows, "full", out) if o.row.row == "RUM"]
    assert report.seeds_text(outcome) == "holds at 2 of 2 finished seeds, 0.004–0.006; 1 of 3 not finished"
    assert report.collect(rows, "quick", out)[0].replicas == ()  # replicas are a full-scale matter


def test_a_row_shows_its_also_values_beside_the_metric(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(
        TARGETS.replace("quick_check = { max = 3.0 }", 'quick_check = { max = 3.0 }\nalso = ["metrics.valid.bpc"]')
    )
    rows = report.load_targets(str(path))
    out = str(tmp_path / "out")
    _write_run(out, "ptb/fs_rum2", {"valid": {"bpc": 1.61234}, "test": {"bpc": 1.5875}})
    text = report.render(report.collect(rows, "quick", out), out)
    assert "| 1.587 (valid.bpc 1.612) | test.bpc |" in text
    _write_run(out, "ptb/fs_rum2", {"test": {"bpc": 1.5875}})  # a run without the value says so
    assert "| 1.587 (valid.bpc —) | test.bpc |" in report.render(report.collect(rows, "quick", out), out)
    _write_run(out, "ptb/fs_rum2", status="running", metrics={})  # no value, nothing beside it
    assert "(valid.bpc" not in report.render(report.collect(rows, "quick", out), out)
