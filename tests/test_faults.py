"""The faults that once lost or falsified a run, or ended in a traceback: each ends in one line
(exit status 2 from a binary) or recovers, and the run folder keeps what a working run left.

Each test here failed on the harness before its redesign (commit a19e1f9).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rum_tf.training import checkpoints, loop, results
from tasks import copying, recall
from training_helpers import REPO, read_json, toy_config, toy_task

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

TINY_COPYING = ["--T=5", "--units=8", "--batch_size=8", "--eval_every=10", "--test_size=16"]


def _listing(folder):
    """{relative path: file bytes} of every file under `folder` (the lock file left out)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if name != ".lock":
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = f.read()
    return found


def _cut(folder, at_step, steps=40):
    """A toy run of `steps` steps killed (KeyboardInterrupt) after `at_step` steps."""
    with pytest.raises(KeyboardInterrupt):
        loop.run(toy_task(fail_at_step=at_step), toy_config(folder, steps=steps))


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_unreadable_state_json_in_the_only_checkpoint_is_refused_and_nothing_is_deleted(tmp_path, damage):
    folder = tmp_path / "run"
    _cut(folder, 15)
    state = folder / results.CHECKPOINT_DIR / "step-00000010" / checkpoints.STATE_FILE
    if damage == "missing":
        state.unlink()
    else:
        state.write_text('{"step": 1')
    before = _listing(folder)
    with pytest.raises(loop.RunError) as error:
        loop.run(toy_task(), toy_config(folder, steps=40))
    message = str(error.value)
    assert "\n" not in message and "step-00000010" in message and "no checkpoint can be read" in message
    after = _listing(folder)
    assert after.pop(results.LOG_FILE).startswith(before.pop(results.LOG_FILE))  # the log only grew
    assert after == before


def test_a_missing_state_json_in_the_newest_checkpoint_falls_back_to_the_older_one(tmp_path):
    whole = loop.run(toy_task(), toy_config(tmp_path / "whole", steps=40))
    folder = tmp_path / "cut"
    ckpt_dir = folder / results.CHECKPOINT_DIR
    _cut(folder, 15)
    shutil.copytree(ckpt_dir / "step-00000010", tmp_path / "step-00000010")
    _cut(folder, 25)
    shutil.copytree(tmp_path / "step-00000010", ckpt_dir / "step-00000010")  # an older checkpoint, as a kept best
    (ckpt_dir / "step-00000020" / checkpoints.STATE_FILE).unlink()

    resumed = loop.run(toy_task(), toy_config(folder, steps=40))
    assert "resuming from step 10 to 40" in (folder / results.LOG_FILE).read_text()
    assert resumed["metrics"] == whole["metrics"]  # exact, from step 10
    assert sorted(os.listdir(ckpt_dir)) == ["step-00000040"]


def test_a_kill_while_pruning_leaves_no_half_deleted_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    ckpt_dir = folder / results.CHECKPOINT_DIR
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        if "step-" in str(path) and os.path.exists(os.path.join(path, checkpoints.STATE_FILE)):
            os.remove(os.path.join(path, checkpoints.STATE_FILE))  # one file gone, then the process dies
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        loop.run(toy_task(), toy_config(folder, steps=40))  # dies pruning step 10 after saving step 20
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    whole = loop.run(toy_task(), toy_config(tmp_path / "whole", steps=40))
    resumed = loop.run(toy_task(), toy_config(folder, steps=40))
    assert resumed["metrics"] == whole["metrics"]
    left = sorted(os.listdir(ckpt_dir))
    assert left == ["step-00000040"], left
    assert all(os.path.exists(ckpt_dir / n / checkpoints.STATE_FILE) for n in left)


# ---------------------------------------------------------------------------- finished runs


def test_a_finished_run_without_its_plot_draws_it_and_changes_nothing_else(tmp_path):
    loop.run(toy_task(), toy_config(tmp_path, steps=20))
    (tmp_path / results.CURVE_PNG).unlink()  # a kill (or a full disk) between results.json and the plot
    before = (tmp_path / results.RESULTS_FILE).read_bytes()
    loop.run(toy_task(), toy_config(tmp_path, steps=20))
    assert (tmp_path / results.CURVE_PNG).stat().st_size > 0
    assert (tmp_path / results.RESULTS_FILE).read_bytes() == before


def test_a_corrupt_results_json_is_one_line_and_kept(tmp_path):
    loop.run(toy_task(), toy_config(tmp_path, steps=20))
    (tmp_path / results.RESULTS_FILE).write_text('{"task": ')
    with pytest.raises(loop.RunError) as error:
        loop.run(toy_task(), toy_config(tmp_path, steps=20))
    assert "\n" not in str(error.value) and "results.json" in str(error.value)
    assert (tmp_path / results.RESULTS_FILE).read_text() == '{"task": '


def test_a_refused_resume_leaves_progress_json_as_it_was(tmp_path):
    _cut(tmp_path, 15)
    before = (tmp_path / results.PROGRESS_FILE).read_bytes()
    with pytest.raises(loop.RunError, match="holds a run with other flags"):
        loop.run(toy_task(), toy_config(tmp_path, steps=40, flags={"units": 7}))
    assert (tmp_path / results.PROGRESS_FILE).read_bytes() == before


def test_a_lock_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / ".lock").mkdir()
    with pytest.raises(loop.RunError) as error:
        loop.run(toy_task(), toy_config(tmp_path, steps=20))
    assert "\n" not in str(error.value) and ".lock" in str(error.value)


# ---------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed=-1"], "--seed must be in [0, 4294967295]"),
        (["--seed=4294967296"], "--seed must be in [0, 4294967295]"),
        (["--learning_rate=inf"], "--learning_rate must be a finite number"),
        (["--learning_rate=nan"], "--learning_rate must be a finite number"),
        (["--clip_norm=inf"], "--clip_norm must be a finite number"),
        (["--eta=inf"], "--eta must be a finite number"),
    ],
)
def test_out_of_range_numbers_are_one_line_usage_errors(args, message, tmp_path):
    from rum_tf.config import flags as training_flags

    with pytest.raises(training_flags.UsageError) as error:
        copying.APP.parse(["prog", f"--output_dir={tmp_path}"] + args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_flagfiles_stop_when_is_unset_by_an_empty_value(tmp_path):
    flagfile = os.path.join(REPO, "flags", "recall", "rum_lambda1_T30.cfg")
    assert recall.APP.parse(["prog", f"--flagfile={flagfile}", f"--output_dir={tmp_path}"]).stop_when is not None
    config = recall.APP.parse(["prog", f"--flagfile={flagfile}", "--stop_when=", f"--output_dir={tmp_path}"])
    assert config.stop_when is None


def test_a_flagfile_that_is_not_utf8_is_one_line(tmp_path):
    from rum_tf.config import flags as training_flags

    flagfile = tmp_path / "bad.cfg"
    flagfile.write_bytes(b"--units=8\n# caf\xe9\n")
    with pytest.raises(training_flags.UsageError) as error:
        copying.APP.parse(["prog", f"--flagfile={flagfile}", f"--output_dir={tmp_path}"])
    assert "\n" not in str(error.value) and "bad.cfg" in str(error.value) and "UTF-8" in str(error.value)


# ---------------------------------------------------------------------------- signals


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_binary_in_one_line_and_keeps_the_run_resumable(tmp_path, signum):
    out = tmp_path / "run"
    args = TINY_COPYING + ["--steps=100000", "--checkpoint_every=5", f"--output_dir={out}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.copying", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the run has checkpointed past step 10
        progress = results.read_progress(str(out)) if (out / results.PROGRESS_FILE).exists() else None
        if progress and progress.get("step", 0) >= 10:
            break
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("I", "W"))]
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("copying.py: error: interrupted"), lines
    assert "run the same command again to resume" in lines[0]
    progress = read_json(out / results.PROGRESS_FILE)
    assert progress["status"] == "interrupted" and progress["step"] >= 10, progress
    saved = checkpoints.list_checkpoints(str(out / results.CHECKPOINT_DIR))
    assert saved and saved[0][0] >= 10
    assert json.loads((out / ".lock").read_text() or "null") is None  # released cleanly
