"""Fault tests of the guarded run folder (rum_tf.training.run_folder and the harness around it).

A second writer, a lock left by a killed run, a diverging run and its rerun, a full disk, a
failing plot, a corrupt newest checkpoint: each ends in one clear line (or a warning) and leaves
the run folder as a working run left it. The tests go through `loop.run` and the task binaries,
and talk about the lock only through its file (pid, host, start time under an flock), so that
they check behaviour, not names.
"""

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest

from rum_tf.training import checkpoints, loop, multitask, results
from tasks import copying
from training_helpers import REPO, read_json, run_in_process, toy_config, toy_task

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

TINY_COPYING = ["--T=5", "--units=8", "--batch_size=8", "--eval_every=10", "--test_size=16"]

# Another process holding a run folder's lock as a run does: an flock on <folder>/.lock, the
# holder's record in it. Prints "locked" once it holds it, then waits to be killed.
_HOLDER = textwrap.dedent("""
    import fcntl, json, os, socket, sys, time
    os.makedirs(sys.argv[1], exist_ok=True)
    fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": "2026-01-01T00:00:00+00:00"}).encode())
    print("locked", flush=True)
    time.sleep(600)
""")


def _error_lines(stderr):
    """The lines of a binary's stderr that report an error of the program (TensorFlow's own C++ log
    lines, such as its CUDA probe, are left out), tracebacks and logging errors included."""
    return [
        line
        for line in stderr.splitlines()
        if re.match(r"^\S+\.py: error: ", line)
        or "Traceback" in line
        or "Logging error" in line
        or re.match(r"^[A-Za-z.]*(Error|Exception)\b", line)
        or "Segmentation fault" in line
    ]


def _listing(folder):
    """{relative path: (size, mtime_ns)} of every file under `folder`."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            found[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def holder(tmp_path):
    """Starts a process that holds `folder`'s lock; yields (process, folder)."""
    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- the lock


def test_a_second_writer_during_a_run_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "run"
    refusals = []

    class SecondWriter(keras.callbacks.Callback):
        """At the end of the second interval, the same command and one with other flags, in the same folder."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch != 1:
                return
            before = _listing(folder)
            for flags in ({}, {"units": 7}):
                with pytest.raises(loop.RunError) as refused:
                    loop.run(toy_task(), toy_config(folder, steps=40, flags=flags))
                refusals.append(str(refused.value))
            assert _listing(folder) == before  # nothing deleted, written or appended

    summary = loop.run(toy_task(extra_callbacks=[SecondWriter()]), toy_config(folder, steps=40))
    assert len(refusals) == 2
    for message in refusals:
        assert "\n" not in message
        assert f"--output_dir={folder} is in use by another run (pid {os.getpid()} on " in message
    # The first run went on as if alone: the numbers of an undisturbed run, one curve.
    alone = loop.run(toy_task(), toy_config(tmp_path / "alone", steps=40))
    assert summary["metrics"] == alone["metrics"]
    lines = (folder / results.CURVE_CSV).read_text().splitlines()
    assert lines[0].startswith("step,") and [line.split(",")[0] for line in lines[1:]] == ["10", "20", "30", "40"]
    assert (folder / results.FLAGS_FILE).read_text() == "--units=6\n"
    assert (folder / ".lock").read_text() == ""  # released at the end


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path, holder):
    folder = tmp_path / "run"
    proc = holder(folder)
    before = _listing(folder)
    with pytest.raises(
        loop.RunError,
        match=rf"in use by another run \(pid {proc.pid} on .*started "
        r"2026-01-01T00:00:00\+00:00\): wait for it to end",
    ):
        loop.run(toy_task(), toy_config(folder, steps=20))
    assert _listing(folder) == before

    proc.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it, the record stays
    proc.wait()
    summary = loop.run(toy_task(), toy_config(folder, steps=20))
    assert summary["status"] == "finished" and summary["steps"] == 20
    log = (folder / results.LOG_FILE).read_text()
    assert f"taking over the lock of a run that ended without releasing it (pid {proc.pid} on " in log


def test_the_binary_refuses_a_busy_folder_in_one_line(tmp_path, holder):
    folder = tmp_path / "run"
    proc = holder(folder)
    result = subprocess.run(
        [sys.executable, "-m", "tasks.copying", *TINY_COPYING, "--steps=20", f"--output_dir={folder}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-2000:]
    assert re.fullmatch(
        rf"copying\.py: error: --output_dir={re.escape(str(folder))} is in use by another run "
        rf"\(pid {proc.pid} on \S+, started 2026-01-01T00:00:00\+00:00\): wait for it to end, or "
        r"choose another --output_dir",
        errors[0],
    ), errors
    assert sorted(os.listdir(folder)) == [".lock"]


# ---------------------------------------------------------------------------- divergence


def test_a_nan_loss_stops_the_binary_at_once_and_its_rerun_says_diverged_again(tmp_path, monkeypatch):
    args = TINY_COPYING + ["--steps=40", "--learning_rate=1e35", f"--output_dir={tmp_path}"]
    losses = []

    class Record(keras.callbacks.Callback):  # the running training loss after every batch
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    original = loop.run

    def run_recording(task, config):
        task.callbacks = [*task.callbacks, Record()]
        return original(task, config)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "run", run_recording)
        with pytest.raises(loop.RunError) as error:
            run_in_process(copying, args)
    first_bad = next(i + 1 for i, v in enumerate(losses) if not math.isfinite(v))
    assert len(losses) == first_bad  # not a batch more
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"training diverged at step {first_bad}: the training loss is ")
    summary = read_json(tmp_path / results.RESULTS_FILE)
    assert summary["status"] == "diverged" and summary["diverged"]["step"] == first_bad
    assert "test" not in summary["metrics"]
    progress = read_json(tmp_path / results.PROGRESS_FILE)
    assert progress["status"] == "diverged" and progress["message"] == message and progress["step"] == 0
    assert checkpoints.list_checkpoints(str(tmp_path / results.CHECKPOINT_DIR)) == []  # none had finite weights
    assert not (tmp_path / results.MODEL_FILE).exists()

    mtime = os.path.getmtime(tmp_path / results.RESULTS_FILE)
    with pytest.raises(
        loop.RunError,
        match=rf"^--output_dir={tmp_path} holds a run that diverged at step "
        rf"{first_bad} \(the training loss is .*\); it cannot be resumed",
    ):
        run_in_process(copying, args)
    assert os.path.getmtime(tmp_path / results.RESULTS_FILE) == mtime


def test_non_finite_weights_at_an_evaluation_never_reach_a_checkpoint(tmp_path):
    class Poison(keras.callbacks.Callback):
        """Sets a weight to NaN after the interval's last batch (step 20): only the evaluation can see it."""

        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 20:
                self.model.get_layer("out").bias.assign(np.full((2,), np.nan, np.float32))

    with pytest.raises(loop.RunError, match=r"^training diverged at step 20: val_loss is nan, val_mae is nan"):
        loop.run(toy_task(keep_best=("val_loss", "min"), extra_callbacks=[Poison()]), toy_config(tmp_path, steps=40))
    saved = checkpoints.list_checkpoints(str(tmp_path / results.CHECKPOINT_DIR))
    assert [s for s, _ in saved] == [10]
    state = checkpoints.read_state(saved[0][1])
    assert state["best"]["step"] == 10 and math.isfinite(state["best"]["value"])
    assert [r["step"] for r in results.read_curve(str(tmp_path / results.CURVE_CSV))] == [10]
    assert read_json(tmp_path / results.RESULTS_FILE)["diverged"] == {
        "step": 20,
        "reason": "val_loss is nan, val_mae is nan",
    }


# ---------------------------------------------------------------------------- full disk

# Run inside a user and mount namespace with a 4 MB tmpfs on argv[1]: a first session of 20
# steps, then the disk filled up to `free` bytes, a second session to 40 steps (the binary, as a
# subprocess), then space freed and the same command again. Outputs go to argv[2].
_FULL_DISK = textwrap.dedent("""
    import json, os, shutil, subprocess, sys
    mnt, out, free = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from training_helpers import run_in_process
    from tasks import copying
    args = ["--T=5", "--units=8", "--batch_size=8", "--eval_every=10", "--test_size=16", f"--output_dir={mnt}/run"]
    run_in_process(copying, args + ["--steps=20"])
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError:
            pass
    os.truncate(filler, os.path.getsize(filler) - free)
    full = subprocess.run([sys.executable, "-m", "tasks.copying", *args, "--steps=40"], capture_output=True, text=True)
    with open(os.path.join(out, "full.json"), "w") as f:
        json.dump({"rc": full.returncode, "stderr": full.stderr}, f)
    shutil.copytree(os.path.join(mnt, "run", "checkpoints"), os.path.join(out, "checkpoints"))
    os.remove(filler)
    after = run_in_process(copying, args + ["--steps=40"])
    with open(os.path.join(out, "after.json"), "w") as f:
        json.dump(after, f)
""")


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """The run's folder on a 4 MB tmpfs (in a user and mount namespace: no root needed, nothing left
    mounted), filled while the run resumes, up to 12 KB: enough to start, too little for the
    checkpoint at step 30."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare: cannot make a small filesystem")
    mount_point, out = tmp_path / "mnt", tmp_path / "out"
    mount_point.mkdir()
    out.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount_point}"], capture_output=True, text=True
    )
    if probe.returncode:
        pytest.skip(f"cannot mount a small tmpfs in a user namespace here: {probe.stderr.strip()}")
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(
            [REPO, os.path.join(REPO, "tests")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    result = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$0" -c "$2" "$1" "$3" 12000',
            sys.executable,
            str(mount_point),
            _FULL_DISK,
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    full = read_json(out / "full.json")
    assert full["rc"] == 2, full["stderr"][-3000:]
    errors = _error_lines(full["stderr"])
    assert errors == [
        f"copying.py: error: no space left on the device of --output_dir={mount_point}/run (writing "
        f"{mount_point}/run/checkpoints): the last good checkpoint (step 20) is intact; free space, "
        "then run the same command again to resume"
    ], full["stderr"][-3000:]
    kept = checkpoints.list_checkpoints(str(out / "checkpoints"))
    assert [s for s, _ in kept] == [20] and sorted(os.listdir(out / "checkpoints")) == ["step-00000020"]
    with h5py.File(os.path.join(kept[0][1], checkpoints.WEIGHTS_FILE), "r") as f:  # complete: h5py opens it
        assert len(f.keys()) > 0
    assert read_json(out / "after.json")["steps"] == 40  # resumed once there was space


# ---------------------------------------------------------------------------- plots


def test_a_failing_plot_is_a_warning_after_results_json(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    summary = loop.run(toy_task(), toy_config(tmp_path, steps=20))
    assert read_json(tmp_path / results.RESULTS_FILE) == summary and summary["status"] == "finished"
    assert not (tmp_path / results.CURVE_PNG).exists()
    assert (
        "no plot from plot_curve (ModuleNotFoundError: import of matplotlib halted"
        in (tmp_path / results.LOG_FILE).read_text()
    )

    def broken():
        raise RuntimeError("the backend broke")

    monkeypatch.setattr(results, "pyplot", broken)
    subs = [
        multitask.SubRun(
            key=k,
            folder=k,
            run=lambda on_progress, k=k: loop.run(toy_task(), toy_config(tmp_path / "m" / k, steps=20), on_progress),
        )
        for k in ("a", "b")
    ]
    parent = multitask.run_all(
        subs,
        str(tmp_path / "m"),
        task="toy",
        model="rum",
        flags={"steps": 20},
        flagfile_text="",
        bar_metric=("test", "loss"),
    )
    assert parent["status"] == "finished" and set(parent["task_results"]["runs"]) == {"a", "b"}
    assert not {results.CURVE_PNG, multitask.RUNS_PNG} & set(os.listdir(tmp_path / "m"))
    log = (tmp_path / "m" / results.LOG_FILE).read_text()
    assert "no plot from _bar_chart (RuntimeError: the backend broke)" in log
    progress = read_json(tmp_path / "m" / results.PROGRESS_FILE)  # summed over the sub-runs
    assert (progress["status"], progress["step"], progress["steps"]) == ("finished", 40, 40)


# ---------------------------------------------------------------------------- corrupt checkpoint


def test_a_corrupt_newest_checkpoint_resumes_from_the_older_one(tmp_path):
    whole = loop.run(toy_task(), toy_config(tmp_path / "whole", steps=40))
    folder = tmp_path / "cut"
    ckpt_dir = folder / results.CHECKPOINT_DIR
    with pytest.raises(KeyboardInterrupt):
        loop.run(toy_task(fail_at_step=15), toy_config(folder, steps=40))
    shutil.copytree(ckpt_dir / "step-00000010", tmp_path / "step-00000010")
    with pytest.raises(KeyboardInterrupt):
        loop.run(toy_task(fail_at_step=25), toy_config(folder, steps=40))
    shutil.copytree(tmp_path / "step-00000010", ckpt_dir / "step-00000010")  # an older checkpoint, as a kept best
    with open(ckpt_dir / "step-00000020" / checkpoints.WEIGHTS_FILE, "r+b") as f:
        f.truncate(100)  # a disk error in the newest weights

    resumed = loop.run(toy_task(), toy_config(folder, steps=40))
    log = (folder / results.LOG_FILE).read_text()
    assert f"cannot restore the checkpoint {ckpt_dir / 'step-00000020'}" in log
    assert "resuming from step 10 to 40" in log
    assert resumed["metrics"] == whole["metrics"]  # exact, from step 10
