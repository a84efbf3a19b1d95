"""--strategy=multi_worker_mirrored: two worker processes on 127.0.0.1 train a quick copying row.

Each worker is `python -m tasks.copying` with TF_CONFIG naming both; the chief (worker 0) writes
the run folder, worker 1 writes under <output_dir>/workers/worker-1. The global batch is split
between them, and the run ends with the numbers of a one-process run with the same global batch,
up to float32 rounding. A killed worker ends the run in one line; the same commands resume it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rum_tf.training import distribute, results
from tasks import copying
from training_helpers import REPO, assert_complete_outputs, read_json, run_in_process

pytestmark = pytest.mark.skipif(pytest.importorskip("keras").backend.backend() != "tensorflow", reason="tf.distribute")

# A quick copying row, with a learning rate at which 40 steps move the loss (2.24 -> 2.04), so that
# a worker training on other batches than the one-process run would show.
ARGS = [
    "--T=5",
    "--units=8",
    "--batch_size=8",  # global: 4 per worker
    "--steps=40",
    "--eval_every=10",
    "--test_size=16",
    "--learning_rate=0.01",
]
# The two workers sum their replicas' gradients and metric totals with an all-reduce, where one
# process sums over the whole batch at once: float32 sums in another order, which differ in the
# last bits (about 1e-7 relative per operation; seen: up to 1.3e-7 over 40 steps). 1e-5 is that
# rounding, compounded over the steps, with room; a worker that trained on other batches, or a
# metric of one worker's share of the batch, is off by 1e-3 and more.
RTOL = 1e-5


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(output_dir, ports, logs, args=ARGS):
    """Worker 0 (the chief) and worker 1 of a loopback cluster, each `python -m tasks.copying`."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(len(ports)):
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="2",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        with open(logs / f"worker-{index}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tasks.copying", *args]
                    + ["--strategy=multi_worker_mirrored", f"--output_dir={output_dir}"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return procs


def _wait(procs, timeout=240):
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same row in one process (no strategy), global batch 8."""
    out = tmp_path_factory.mktemp("one_process")
    run_in_process(copying, ARGS + [f"--output_dir={out}"])
    return out


def _max_relative_difference(out, reference):
    """max |a - b| / |b| over the test metrics and every curve value; asserts the same steps and names."""
    got, want = read_json(out / results.RESULTS_FILE)["metrics"], read_json(reference / results.RESULTS_FILE)["metrics"]
    pairs = [(got["test"][k], v) for k, v in want["test"].items()]
    rows = results.read_curve(out / results.CURVE_CSV)
    want_rows = results.read_curve(reference / results.CURVE_CSV)
    assert [r["step"] for r in rows] == [r["step"] for r in want_rows]
    for row, want_row in zip(rows, want_rows):
        pairs += [(row[k], want_row[k]) for k in ("loss", "accuracy")]
    a, b = np.array(pairs, dtype=np.float64).T
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.slow  # two worker processes train
def test_two_workers_train_like_one_process_with_the_same_global_batch(tmp_path, one_process):
    out = tmp_path / "run"
    codes = _wait(_start_workers(out, _free_ports(2), tmp_path))
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)

    summary = assert_complete_outputs(str(out), "copying")  # the chief writes the run folder
    assert summary["strategy"] == "multi_worker_mirrored" and summary["replicas"] == 2
    worker = out / "workers" / "worker-1"  # worker 1 writes its own folder, never the chief's results.json
    assert not (worker / results.RESULTS_FILE).exists()

    # Both workers log the metrics of the whole global batch, not of their own share.
    def metrics(folder):
        return [(r["step"], r["loss"], r["accuracy"]) for r in results.read_curve(folder / results.CURVE_CSV)]

    assert metrics(worker) == metrics(out) and len(metrics(out)) == 4

    difference = _max_relative_difference(out, one_process)
    print(f"max relative difference, 2 workers vs 1 process: {difference:.3g}")
    assert difference <= RTOL


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_in_one_line_and_the_same_commands_resume_it(tmp_path, one_process):
    out, ports = tmp_path / "run", _free_ports(2)
    procs = _start_workers(out, ports, tmp_path)
    deadline = time.monotonic() + 180
    while not (out / results.CHECKPOINT_DIR / "step-00000020").exists():
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "ended before the kill"
        time.sleep(0.02)
    os.kill(procs[1].pid, signal.SIGKILL)
    # The chief cannot step without worker 1: the workers' coordination service misses its
    # heartbeats (about 10 s) and aborts the chief's collectives.
    assert _wait(procs[:1], timeout=120) == [2]
    procs[1].wait()
    stderr = (tmp_path / "worker-0.log").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("copying.py: error: --strategy=multi_worker_mirrored: a worker was lost ("), last
    assert "the last checkpoint (step 20) is kept" in last and last.endswith("with the same commands to resume")
    assert not (out / results.RESULTS_FILE).exists()

    # The same two commands (the same TF_CONFIG) resume from the chief's checkpoint and end like
    # an uninterrupted run.
    codes = _wait(_start_workers(out, ports, tmp_path))
    assert codes == [0, 0], (tmp_path / "worker-0.log").read_text()[-3000:]
    assert "resuming from step 20" in (tmp_path / "worker-0.log").read_text()
    assert "resuming from step 20" in (tmp_path / "worker-1.log").read_text()
    assert assert_complete_outputs(str(out), "copying")["replicas"] == 2
    difference = _max_relative_difference(out, one_process)
    print(f"max relative difference, 2 workers killed and resumed vs 1 process: {difference:.3g}")
    assert difference <= RTOL


@pytest.mark.slow  # starts TensorFlow in a process of its own
def test_the_strategy_made_after_tensorflow_started_is_one_line(tmp_path):
    """A Python caller that starts TensorFlow before `distribute.start` gets a RunError naming the fix."""
    code = (
        "import tensorflow as tf\n"
        "tf.constant(1.0)\n"
        "from rum_tf.training import distribute, run_folder\n"
        "try:\n"
        "    distribute.start('multi_worker_mirrored')\n"
        "except run_folder.RunError as e:\n"
        "    print(e)\n"
    )
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_CONFIG=json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines() == [
        "--strategy=multi_worker_mirrored: TensorFlow had started before the strategy was made (Collective ops must "
        "be configured at program startup); call rum_tf.training.distribute.start(strategy) first thing in the process"
    ]


def test_a_lost_worker_is_one_line_naming_the_last_checkpoint(tmp_path):
    import tensorflow as tf

    # What the chief saw when worker 1 was killed (TensorFlow 2.21), and what worker 1 saw when the chief was.
    heartbeats = (
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/device:"
        "CPU:0}} Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are "
        "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the "
        "task logs for an earlier error, or scheduler events (e.g. preemption, eviction) to debug further.\nThe "
        "error could be from a previous operation. Restart your program to reset. [Op:CollectiveReduceV2] name: "
    )
    reset = (
        "Graph execution error:\n\nDetected at node tf1rm_sprop/CollectiveReduceV2 defined at (most recent call "
        'last):\n  File "<frozen runpy>", line 198, in _run_module_as_main\n\n  File "tasks/copying.py", line 75, '
        "in <module>\n\nCollective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
        "information from remote target /job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/"
        "CompleteInstance:\n:UNKNOWN:Error received from peer  {grpc_status:14}\n\t [[{{node "
        "tf1rm_sprop/CollectiveReduceV2}}]] [Op:__inference_multi_step_on_iterator_4521]"
    )
    os.makedirs(tmp_path / results.CHECKPOINT_DIR / "step-00000010")
    os.makedirs(tmp_path / results.CHECKPOINT_DIR / "step-00000020")
    errors = [tf.errors.UnavailableError(None, None, heartbeats), tf.errors.UnavailableError(None, None, reset)]
    lines = [str(distribute.lost_worker(e, str(tmp_path))) for e in errors]
    assert lines == [
        "--strategy=multi_worker_mirrored: a worker was lost (UnavailableError: Collective ops is aborted by: Error "
        "reported from /job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats): "
        "/job:worker/replica:0/task:1); the last checkpoint (step 20) is kept: start all the workers again with "
        "the same commands to resume",
        "--strategy=multi_worker_mirrored: a worker was lost (UnavailableError: Collective ops is aborted by: "
        "recvmsg:Connection reset by peer); the last checkpoint (step 20) is kept: start all the workers again "
        "with the same commands to resume",
    ]
    assert distribute.lost_worker_errors("default") == ()  # a single process's TensorFlow errors stay as they are
