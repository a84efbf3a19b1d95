"""The training harness: registry, optimizers, checkpoints, results files, run()."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from rum_tf import RUM, layers
from rum_tf.config import models
from rum_tf.data import streams
from rum_tf.training import callbacks, checkpoints, loop, optimizers, results, run_folder
from training_helpers import toy_config, toy_task

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

# ---------------------------------------------------------------------------- models


def test_registry_builds_every_model():
    built_in = ("rum", "lstm", "gru", "rnn")  # other modules may register more (e.g. fs_rum)
    assert set(built_in) <= set(models.names())
    x = np.eye(10, dtype=np.float32)[np.random.default_rng(0).integers(0, 10, (2, 7))]
    for name in built_in:
        layer = models.recurrent_layer(name, 6, seed=1, return_sequences=True)
        assert tuple(layer(x).shape) == (2, 7, 6), name


def test_rum_options_reach_the_layer():
    layer = models.recurrent_layer("rum", 4, seed=3, options={"lambda_": 1, "eta": 2.0, "zoneout_keep_h": 0.9})
    assert isinstance(layer, RUM)
    assert (layer.lambda_, layer.eta, layer.zoneout_keep_h) == (1, 2.0, 0.9)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'nosuch'; choose from .*gru, lstm, rnn, rum"):
        models.recurrent_layer("nosuch", 4)
    with pytest.raises(ValueError, match="--model=lstm does not take eta"):
        models.recurrent_layer("lstm", 4, options={"eta": 1.0})
    with pytest.raises(ValueError, match="already registered"):
        models.register("rum")(lambda units, **kw: None)


def test_one_registration_adds_a_model():
    @models.register("toy_rnn", options={"activation": models.RUM_OPTIONS["activation"]})  # RUM's, shared
    def _toy(units, *, seed=None, activation="tanh", **layer_kwargs):
        return keras.layers.SimpleRNN(units, activation=activation, seed=seed, **layer_kwargs)

    try:
        assert "toy_rnn" in models.names()
        layer = models.recurrent_layer("toy_rnn", 3, options={"activation": "relu"})
        assert layer.cell.activation is keras.activations.relu
    finally:
        models._REGISTRY.pop("toy_rnn")


def test_one_hot_and_output_layer():
    layer = layers.OneHot(5)
    out = np.asarray(layer(np.array([[0, 4, 2]])))
    np.testing.assert_array_equal(out, np.eye(5, dtype=np.float32)[[[0, 4, 2]]])
    assert layers.OneHot.from_config(layer.get_config()).depth == 5

    dense = layers.output_layer(9, 10)
    dense.build((None, 100))
    limit = np.sqrt(6 / 19)
    kernel = np.asarray(dense.kernel)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    np.testing.assert_allclose(np.asarray(dense.bias), 0.01)


# ---------------------------------------------------------------------------- optimizers


def test_tf1_rmsprop_first_steps_match_tf1_formula():
    var = keras.Variable(np.array([1.0, -2.0, 0.5], np.float32))
    opt = optimizers.make_optimizer("rmsprop", 0.01, rmsprop_decay=0.9)
    grads = [np.array([0.3, -1.0, 2.0], np.float32), np.array([-0.1, 0.2, 0.0], np.float32)]
    value, ms = np.array([1.0, -2.0, 0.5]), np.ones(3)  # TF1: mean square starts at 1
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        ms = 0.9 * ms + 0.1 * g.astype(np.float64) ** 2
        value = value - 0.01 * g / np.sqrt(ms + 1e-10)
    np.testing.assert_allclose(np.asarray(var), value, rtol=1e-6)


def test_optimizer_settings():
    adam = optimizers.make_optimizer("adam", 2e-3, clip_norm=1.0)
    assert isinstance(adam, keras.optimizers.Adam)
    assert adam.epsilon == 1e-8 and adam.global_clipnorm == 1.0
    assert optimizers.make_optimizer("rmsprop", 1e-3, clip_norm=0).global_clipnorm is None
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        optimizers.make_optimizer("sgd", 1e-3)


# ---------------------------------------------------------------------------- inputs


def test_cyclic_batches_follow_the_official_next_batch():
    x = np.arange(10)
    for start in (0, 3, 7):
        got = [b[0].numpy().tolist() for b in streams.cyclic_batches((x,), 4, start).take(3)]
        want = [[(k * 4 + i) % 10 for i in range(4)] for k in range(start, start + 3)]
        assert got == want


# ---------------------------------------------------------------------------- checkpoints


def _zoneout_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 3))
    out = keras.layers.Dense(2)(RUM(4, zoneout_keep_h=0.5, seed=1, name="rnn")(inp))
    model = keras.Model(inp, out)
    model.compile(optimizer=optimizers.make_optimizer("adam", 1e-2), loss="mse")
    return model


def test_checkpoint_round_trip_includes_optimizer_and_rng_state(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5, 3)), rng.normal(size=(8, 2))
    model = _zoneout_model()
    model.fit(x, y, epochs=2, verbose=0)
    checkpoints.save(model, str(tmp_path), 7, {"note": "hi"})
    model.fit(x, y, epochs=1, verbose=0)
    after = [np.asarray(v) for v in model.variables] + [np.asarray(v) for v in model.optimizer.variables]

    clone = _zoneout_model()
    state = checkpoints.restore_latest(clone, str(tmp_path))
    assert state["step"] == 7 and state["note"] == "hi"
    clone.fit(x, y, epochs=1, verbose=0)  # same weights, moments and zoneout masks
    again = [np.asarray(v) for v in clone.variables] + [np.asarray(v) for v in clone.optimizer.variables]
    for a, b in zip(after, again):
        np.testing.assert_array_equal(a, b)


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    model = _zoneout_model()
    directory = str(tmp_path)
    os.makedirs(os.path.join(directory, ".tmp-step-00000009-1"))  # a writer killed mid-way
    for step in (1, 2, 3):
        checkpoints.save(model, directory, step, {}, keep=[1])
    assert [s for s, _ in checkpoints.list_checkpoints(directory)] == [3, 1]
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp")]
    assert checkpoints.restore_latest(_zoneout_model(), str(tmp_path / "none")) is None


# ---------------------------------------------------------------------------- results files


def test_read_curve_drops_torn_and_later_rows(tmp_path):
    path = str(tmp_path / "curve.csv")
    with open(path, "w") as f:
        f.write("step,loss,val_loss\n10,1.5,2.0\n20,1.0,\n30,0.5,0.4\n20,0.9,1.1\n40,0.2")
    rows = results.read_curve(path)
    assert [r["step"] for r in rows] == [10, 20, 30]  # the torn row 40 is dropped
    assert rows[1] == {"step": 20, "loss": 0.9, "val_loss": 1.1}  # a repeated step: the last wins
    results.truncate_curve(path, 20)
    assert [r["step"] for r in results.read_curve(path)] == [10, 20]
    assert open(path).readline().strip() == "step,loss,val_loss"


def test_atomic_path_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = str(tmp_path / "f.txt")
    run_folder.atomic_write_text(path, "old\n")
    with pytest.raises(OSError, match="disk full"):
        with run_folder.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise OSError(28, "disk full")
    assert open(path).read() == "old\n" and os.listdir(tmp_path) == ["f.txt"]
    folder = str(tmp_path / "d")
    for text in ("1", "2"):  # a folder replaces a folder
        with run_folder.atomic_path(folder) as tmp:
            os.makedirs(tmp)
            run_folder.atomic_write_text(os.path.join(tmp, "x"), text)
    assert open(os.path.join(folder, "x")).read() == "2" and sorted(os.listdir(tmp_path)) == ["d", "f.txt"]


def test_write_results_checks_the_schema(tmp_path):
    with pytest.raises(ValueError, match="lack"):
        results.write_results(str(tmp_path), {"task": "x"})
    summary = {k: 1 for k in results.REQUIRED_KEYS}
    summary["metrics"] = {"test": {"loss": float("nan")}}
    results.write_results(str(tmp_path), summary)
    loaded = results.read_results(str(tmp_path))
    assert loaded["schema"] == results.SCHEMA_VERSION and loaded["metrics"]["test"]["loss"] == "nan"
    json.loads(open(tmp_path / "results.json").read())  # standard JSON


def test_plot_curve_with_reference_line(tmp_path):
    csv_path, png = str(tmp_path / "c.csv"), str(tmp_path / "c.png")
    with open(csv_path, "w") as f:
        f.write("step,loss,accuracy\n10,1.0,0.5\n20,0.5,0.7\n")
    assert results.plot_curve(csv_path, png, [("loss", ["loss", "val_loss"], {"baseline": 0.7})], "t") == png
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_format_duration():
    assert callbacks.format_duration(5) == "5s"
    assert callbacks.format_duration(125) == "2m05s"
    assert callbacks.format_duration(3 * 3600 + 60) == "3h01m"


# ---------------------------------------------------------------------------- run()


def test_run_writes_outputs_and_does_not_retrain(tmp_path):
    summary = loop.run(toy_task(), toy_config(tmp_path))
    assert summary["steps"] == 30 and set(summary["metrics"]) == {"train", "valid", "test"}
    assert summary["metrics"]["valid"]["loss"] == pytest.approx(summary["metrics"]["test"]["loss"], rel=1e-5)
    files = set(os.listdir(tmp_path))
    assert {
        "flags.cfg",
        "results.json",
        "curve.csv",
        "curve.png",
        "model.keras",
        "log.txt",
        "checkpoints",
        "tensorboard",
    } <= files
    assert "step 30/30 (100%)" in open(tmp_path / "log.txt").read()
    assert keras.saving.load_model(str(tmp_path / "model.keras")).count_params() > 0
    progress = results.read_progress(str(tmp_path))
    assert (progress["task"], progress["status"], progress["step"], progress["steps"]) == ("toy", "finished", 30, 30)
    assert progress["pid"] == os.getpid() and progress["message"] is None and progress["eta_s"] is None
    assert progress["metrics"]["val_loss"] == summary["metrics"]["valid"]["loss"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    mtime = os.path.getmtime(tmp_path / "results.json")
    assert loop.run(toy_task(), toy_config(tmp_path)) == results.read_results(str(tmp_path))
    assert os.path.getmtime(tmp_path / "results.json") == mtime
    with pytest.raises(loop.RunError, match="other flags .--units=6 there, 7 here"):
        loop.run(toy_task(), toy_config(tmp_path, flags={"units": 7}))
    with pytest.raises(loop.RunError, match="finished at 30 steps"):
        loop.run(toy_task(), toy_config(tmp_path, steps=20))


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    whole = loop.run(toy_task(), toy_config(tmp_path / "whole", steps=40))
    with pytest.raises(KeyboardInterrupt):
        loop.run(toy_task(fail_at_step=25), toy_config(tmp_path / "cut", steps=40))
    assert [s for s, _ in checkpoints.list_checkpoints(str(tmp_path / "cut" / "checkpoints"))] == [20]
    resumed = loop.run(toy_task(), toy_config(tmp_path / "cut", steps=40))
    assert resumed["metrics"] == whole["metrics"]
    assert results.read_curve(str(tmp_path / "cut" / "curve.csv"))[-1]["loss"] == pytest.approx(
        whole["metrics"]["train"]["loss"], rel=0, abs=0
    )
    extended = loop.run(toy_task(), toy_config(tmp_path / "cut", steps=50))  # more --steps continue it
    assert extended["steps"] == 50 and len(results.read_curve(str(tmp_path / "cut" / "curve.csv"))) == 5


def test_keep_best_ends_on_the_best_evaluation(tmp_path):
    class Spoil(keras.callbacks.Callback):  # makes the last evaluations worse than the first
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= 2:
                self.model.get_layer("out").bias.assign(np.full((2,), 50.0, np.float32))

    summary = loop.run(
        toy_task(keep_best=("val_loss", "min"), extra_callbacks=[Spoil()]), toy_config(tmp_path, steps=40)
    )
    assert summary["best"]["monitor"] == "val_loss" and summary["best"]["step"] <= 20
    assert summary["metrics"]["test"]["loss"] == pytest.approx(summary["best"]["value"], rel=1e-5)
    kept = [s for s, _ in checkpoints.list_checkpoints(str(tmp_path / "checkpoints"))]
    assert kept == [40, summary["best"]["step"]]


# ---------------------------------------------------------------------------- --stop_when


def test_stop_rule_parses_and_counts_evaluations_in_a_row():
    rule = callbacks.StopRule.parse(" val_accuracy >= 0.99 : 3 ")
    assert rule == callbacks.StopRule("val_accuracy", ">=", 0.99, 3) and str(rule) == "val_accuracy>=0.99:3"
    assert callbacks.StopRule.parse("loss<0.5") == callbacks.StopRule("loss", "<", 0.5, 1)
    rows = [
        {"step": s, "val_accuracy": a}
        for s, a in [(10, 0.995), (20, 0.99), (30, 0.5), (40, 1.0), (50, "nan"), (60, 0.999), (70, 0.991), (80, 0.992)]
    ]
    assert rule.met(rows[:7]) is None  # the streaks are broken at 30 and by the NaN at 50
    stopped = rule.met(rows)
    assert stopped["step"] == 80 and stopped["rule"] == "val_accuracy>=0.99:3"
    assert "(0.999, 0.991, 0.992)" in stopped["reason"]
    for bad in ("val_accuracy", "loss<=", "loss<=1:x", "loss==1", "loss<=inf", "1loss<2"):
        with pytest.raises(ValueError, match="--stop_when"):
            callbacks.StopRule.parse(bad)


def test_stop_when_ends_the_run_records_why_and_is_not_rerun(tmp_path):
    # The toy regression's validation loss falls below 1.0 after a few evaluations, never at the start.
    first = loop.run(toy_task(), toy_config(tmp_path / "plain", steps=100))
    val = [r["val_loss"] for r in results.read_curve(str(tmp_path / "plain" / "curve.csv"))]
    assert val[0] > 1.0 and min(val) < 1.0, val
    expected = next(10 * (i + 2) for i in range(len(val) - 1) if val[i] <= 1.0 and val[i + 1] <= 1.0)

    summary = loop.run(toy_task(), toy_config(tmp_path / "stop", steps=100, stop_when="val_loss<=1.0:2"))
    assert summary["steps"] == expected < 100 and summary["stopped"]["step"] == expected
    assert summary["stopped"]["rule"] == "val_loss<=1:2" and summary["status"] == "finished"
    rows = results.read_curve(str(tmp_path / "stop" / "curve.csv"))
    assert [r["step"] for r in rows] == list(range(10, expected + 1, 10))
    plain = results.read_curve(str(tmp_path / "plain" / "curve.csv"))[: len(rows)]
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in plain]  # the same training until the stop
    assert summary["metrics"]["train"]["loss"] == rows[-1]["loss"] and first["steps"] == 100
    assert "stopping at step" in open(tmp_path / "stop" / "log.txt").read()
    mtime = os.path.getmtime(tmp_path / "stop" / "results.json")
    again = loop.run(toy_task(), toy_config(tmp_path / "stop", steps=120, stop_when="val_loss<=1.0:2"))
    assert again == summary and os.path.getmtime(tmp_path / "stop" / "results.json") == mtime


def test_a_stricter_stop_when_continues_a_stopped_run(tmp_path):
    loose = loop.run(toy_task(), toy_config(tmp_path, steps=100, stop_when="loss<=1e9:2"))
    assert loose["steps"] == 20
    with pytest.raises(KeyboardInterrupt):  # a continuation killed before it ends leaves no stale results
        loop.run(toy_task(fail_at_step=25), toy_config(tmp_path, steps=100, stop_when="loss<=1e9:4"))
    assert results.read_results(str(tmp_path)) is None
    strict = loop.run(toy_task(), toy_config(tmp_path, steps=100, stop_when="loss<=1e9:4"))
    assert strict["steps"] == 40 and strict["stopped"]["rule"] == "loss<=1e+09:4"
    rows = results.read_curve(str(tmp_path / "curve.csv"))
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    whole = loop.run(toy_task(), toy_config(tmp_path / "whole", steps=100, stop_when="loss<=1e9:4"))
    assert whole["metrics"] == strict["metrics"]  # continued exactly from the checkpoint at 20


def test_stop_when_streak_survives_a_resume(tmp_path):
    config = dict(steps=80, stop_when="loss<=1e9:3")  # holds at every evaluation: stops at step 30
    with pytest.raises(KeyboardInterrupt):  # killed at 25: checkpoint 20 holds two of the three
        loop.run(toy_task(fail_at_step=25), toy_config(tmp_path, **config))
    summary = loop.run(toy_task(), toy_config(tmp_path, **config))
    assert summary["steps"] == 30 and summary["stopped"]["step"] == 30


def test_stop_when_names_a_logged_metric(tmp_path):
    with pytest.raises(loop.RunError, match="the toy task logs no 'val_accuracy' .it logs loss, mae, val_loss"):
        loop.run(toy_task(), toy_config(tmp_path, stop_when="val_accuracy>=0.9"))


def test_results_name_the_commit_of_the_code_that_ran():
    import subprocess

    from rum_tf.training import environment

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    status = subprocess.run(["git", "-C", repo, "status", "--porcelain"], capture_output=True, text=True).stdout
    assert environment.CODE == {"commit": head.stdout.strip(), "clean": status == ""}
    assert environment.describe("default", 1, False)["code"] == environment.CODE


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="oneDNN is TensorFlow's")
def test_results_say_whether_tensorflow_ran_its_onednn_kernels():
    import subprocess

    # TensorFlow reads the variable once, at import: one process per setting, run side by side.
    code = "from rum_tf.training import environment; print(environment.describe('default', 1, False)['onednn'])"
    procs = {
        value: subprocess.Popen(
            [sys.executable, "-c", code],
            env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for value in ("0", "1")
    }
    printed = {value: proc.communicate(timeout=300)[0].strip().splitlines()[-1] for value, proc in procs.items()}
    assert printed == {"0": "False", "1": "True"}
