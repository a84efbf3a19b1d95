"""Helpers of the training and task-binary tests: run a binary in-process or as a subprocess."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_DIR = os.path.join(REPO, "flags")


def run_in_process(module, args):
    """Parse `args` as `module`'s command line into its config and run its main(); returns the results dict."""
    return module.main(module.APP.parse([module.__name__] + list(args)))


def run_subprocess(module_name, args, env=None, prelude="", timeout=300):
    """`python -m module_name args` (after `prelude` Python code, if any) in the repository root."""
    env = dict(os.environ, **(env or {}))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if prelude:
        code = (f"{prelude}\nimport sys\nfrom {module_name.rsplit('.', 1)[0]} import {module_name.rsplit('.', 1)[1]} as m\n"
                f"sys.argv = [m.__file__] + {list(args)!r}\nm.APP.run(m.main)\n")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", module_name] + list(args)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def assert_complete_outputs(output_dir, task, with_valid=False):
    """The files every finished run leaves (rum_tf.training.results)."""
    from rum_tf.training import results

    for name in (results.FLAGS_FILE, results.RESULTS_FILE, results.CURVE_CSV, results.CURVE_PNG, results.MODEL_FILE,
                 results.LOG_FILE):
        assert os.path.getsize(os.path.join(output_dir, name)) > 0, name
    events = [f for _, _, files in os.walk(os.path.join(output_dir, results.TENSORBOARD_DIR)) for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events), events
    assert os.listdir(os.path.join(output_dir, results.CHECKPOINT_DIR))
    summary = read_json(os.path.join(output_dir, results.RESULTS_FILE))
    for key in results.REQUIRED_KEYS + ("schema", "train_time_s", "devices", "machine", "versions"):
        assert key in summary, key
    assert summary["task"] == task and summary["status"] == "finished"
    assert summary["parameters"] > 0 and summary["steps_per_s"] > 0
    assert set(summary["metrics"]) == ({"train", "valid", "test"} if with_valid else {"train", "test"})
    rows = results.read_curve(os.path.join(output_dir, results.CURVE_CSV))
    assert [int(r["step"]) for r in rows] == list(range(summary["flags"]["eval_every"], summary["steps"] + 1,
                                                        summary["flags"]["eval_every"]))
    return summary
