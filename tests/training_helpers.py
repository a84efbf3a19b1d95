"""Helpers of the training and task-binary tests: run a binary in-process or as a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np

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
        package, name = module_name.rsplit(".", 1)
        code = (
            f"{prelude}\nimport sys\nfrom {package} import {name} as m\n"
            f"sys.argv = [m.__file__] + {list(args)!r}\nm.APP.run(m.main)\n"
        )
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

    for name in (
        results.FLAGS_FILE,
        results.RESULTS_FILE,
        results.CURVE_CSV,
        results.CURVE_PNG,
        results.MODEL_FILE,
        results.LOG_FILE,
    ):
        assert os.path.getsize(os.path.join(output_dir, name)) > 0, name
    events = [f for _, _, files in os.walk(os.path.join(output_dir, results.TENSORBOARD_DIR)) for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events), events
    assert os.listdir(os.path.join(output_dir, results.CHECKPOINT_DIR))
    summary = read_json(os.path.join(output_dir, results.RESULTS_FILE))
    for key in results.REQUIRED_KEYS + ("schema", "train_time_s", "devices", "machine", "versions", "code", "onednn"):
        assert key in summary, key
    assert summary["task"] == task and summary["status"] == "finished"
    assert summary["parameters"] > 0 and summary["steps_per_s"] > 0
    assert set(summary["metrics"]) == ({"train", "valid", "test"} if with_valid else {"train", "test"})
    rows = results.read_curve(os.path.join(output_dir, results.CURVE_CSV))
    assert [int(r["step"]) for r in rows] == list(
        range(summary["flags"]["eval_every"], summary["steps"] + 1, summary["flags"]["eval_every"])
    )
    return summary


def toy_task(fail_at_step=None, keep_best=None, extra_callbacks=()):
    """A `loop.Task`: regression of a fixed linear map through a small RUM; batch k drawn from k.

    Raises KeyboardInterrupt after `fail_at_step` steps (an interruption at an arbitrary step).
    """
    import keras

    from rum_tf import RUM
    from rum_tf.data import streams
    from rum_tf.training import loop

    w = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)

    def batch(k):
        x = np.random.default_rng([1, k]).normal(size=(8, 4, 3)).astype(np.float32)
        return x, x.sum(1) @ w

    import tensorflow as tf

    spec = (tf.TensorSpec((8, 4, 3), tf.float32), tf.TensorSpec((8, 2), tf.float32))
    valid = batch(10_000)

    class Fail(keras.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            if fail_at_step is not None and self.model.optimizer.iterations.numpy() >= fail_at_step:
                raise KeyboardInterrupt  # an interruption at an arbitrary step

    def build():
        inp = keras.Input((4, 3))
        h = RUM(6, zoneout_keep_h=0.8, seed=0, name="rnn")(inp)
        return keras.Model(inp, keras.layers.Dense(2, name="out")(h))

    return loop.Task(
        name="toy",
        build_model=build,
        train_data=lambda step: streams.generated_batches(batch, step, spec),
        loss="mse",
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
        valid_data=lambda: streams.fixed_batches(valid, 8),
        test_data=lambda: streams.fixed_batches(valid, 8),
        keep_best=keep_best,
        references={"loss": {"zero": 0.0}},
        callbacks=[Fail(), *extra_callbacks],
    )


def toy_config(output_dir, steps=30, **kw):
    """The `loop.RunConfig` of `toy_task`: Adam 1e-2, an evaluation every 10 steps."""
    from rum_tf.training import loop

    flags = {"steps": steps, "units": 6, **kw.pop("flags", {})}
    return loop.RunConfig(
        task="toy",
        output_dir=str(output_dir),
        steps=steps,
        eval_every=10,
        optimizer="adam",
        learning_rate=1e-2,
        flags=flags,
        flagfile_text="--units=6\n",
        **kw,
    )
