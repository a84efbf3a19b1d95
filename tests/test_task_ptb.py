"""python -m tasks.ptb: outputs, the state carried across windows, resume, configurations, bad input."""

import dataclasses
import glob
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from rum_tf import bptt
from rum_tf.config import flags as training_flags
from rum_tf.config import models
from rum_tf.data import files, streams
from rum_tf.data import ptb as ptb_data
from rum_tf.training import loop, results
from tasks import ptb
from training_helpers import REPO, read_json, run_in_process, run_subprocess

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

DATA_DIR = os.environ.get(files.ENV_DATA_DIR) or os.path.join(os.path.dirname(REPO), "shared", "data")
TINY = [
    "--fast_units=8",
    "--units=8",
    "--embed_size=8",
    "--batch_size=4",
    "--num_steps=10",
    "--max_chars=1000",
    "--max_eval_chars=500",
    "--test_batch_size=3",
    "--epochs=2",
    f"--data_dir={DATA_DIR}",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"no data folder at {DATA_DIR} (set {files.ENV_DATA_DIR})")
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))


def _parse(args, tmp_path):
    return ptb.APP.parse(["ptb.py", f"--output_dir={tmp_path}"] + list(args))


def _assert_complete(out, summary):
    for name in (
        results.FLAGS_FILE,
        results.RESULTS_FILE,
        results.CURVE_CSV,
        results.CURVE_PNG,
        results.MODEL_FILE,
        results.LOG_FILE,
    ):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert os.listdir(os.path.join(out, results.CHECKPOINT_DIR))
    assert summary == read_json(os.path.join(out, results.RESULTS_FILE))
    for key in results.REQUIRED_KEYS:
        assert key in summary, key
    assert set(summary["metrics"]) == {"train", "valid", "test"}
    per_epoch = summary["task_results"]["steps_per_epoch"]
    rows = results.read_curve(os.path.join(out, results.CURVE_CSV))
    assert [int(r["step"]) for r in rows] == list(range(per_epoch, summary["steps"] + 1, per_epoch))
    assert all({"bpc", "val_bpc", "chars_per_s"} <= set(r) for r in rows)


def test_tiny_run_writes_complete_outputs(tmp_path):
    summary = run_in_process(ptb, TINY + [f"--output_dir={tmp_path}"])
    _assert_complete(str(tmp_path), summary)
    info = summary["task_results"]
    # 1,000 chars in 4 rows of 250: (250 - 1) // 10 = 24 windows per epoch.
    assert info["steps_per_epoch"] == 24 and summary["steps"] == 48
    assert info["epochs"] == 2 and info["vocab_size"] == 50 and info["test_batch_size"] == 3
    assert info["train_chars"] == 24 * 4 * 10 and info["train_chars_per_s"] > 0
    assert 3 < info["unigram_entropy_bits"] < math.log2(50)
    assert summary["best"]["monitor"] == "val_bpc"
    assert summary["metrics"]["test"]["bpc"] == pytest.approx(
        summary["metrics"]["test"]["loss"] / 10 / math.log(2), rel=1e-5
    )
    assert summary["model"] == "fs_rum" and summary["parameters"] > 0
    flags_text = (tmp_path / results.FLAGS_FILE).read_text()
    assert "--steps" not in flags_text and "--num_layers" not in flags_text and "--fast_units=8" in flags_text
    assert "[unigram entropy" in (tmp_path / results.LOG_FILE).read_text()


FS_ARGS = dict(fast_units=6, fast_layers=2, keep_prob=0.65, zoneout_keep_c=0.5)


def _carrying(model, **options):
    """The PTB binary's recurrent layer (6 units), carrying its state across batches."""
    more = FS_ARGS if not models.get(model).stackable else {}
    return ptb.recurrent_layers(model, 6, 1, 0, {**options, **more})


def _twin(length, model, **options):
    """The same model without state carrying, over whole rows; returns (logits, final states)."""
    chars = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(50, 5)(chars)
    more = FS_ARGS if not models.get(model).stackable else {}
    out = models.recurrent_layer(
        model, 6, seed=0, options={**options, **more}, return_sequences=True, return_state=True
    )(x)
    return keras.Model(chars, [keras.layers.Dense(50)(out[0]), out[1:]])


def _stream(batch, num_steps, windows, seed=0, ids=None):
    if ids is None:
        ids = np.random.default_rng(seed).integers(0, 50, batch * (windows * num_steps + 1)).astype(np.int32)
    x, y = ptb_data.bptt_batches(ids, batch, num_steps)
    rows = ids[: batch * (len(ids) // batch)].reshape(batch, -1)[:, : len(x) * num_steps + 1]
    return x, y, rows[:, :-1], rows[:, 1:]


def _bpc(model, x, y):
    logits = model(x)[0]
    ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return float(np.mean(keras.ops.convert_to_numpy(ce))) / math.log(2)


@pytest.mark.parametrize("model, options", [("rum", {"lambda_": 1, "eta": 1.0}), ("fs_rum", {"eta": 1.0})])
def test_evaluation_carries_the_state_across_windows_like_one_long_sequence(model, options):
    # λ=1 also checks the reset: its memory must restart at the identity (it travels as M - I).
    keras.utils.set_random_seed(1)
    B, T, K = 3, 4, 5
    ids = np.random.default_rng(0).integers(0, 50, B * (K * T + 1)).astype(np.int32)
    x, y, whole_x, whole_y = _stream(B, T, K, ids=ids)
    build = lambda batch: ptb.build_model(batch, T, 50, 5, _carrying(model, **options))  # noqa: E731
    stateful = build(B)
    stateful.compile(loss=bptt.SequenceLoss(T), metrics=[bptt.bpc_metric()])
    twin = _twin(K * T, model, **options)
    bptt.copy_weights(stateful, twin)
    for state in stateful.get_layer("rnn").states:  # stale state, as validation finds it after training
        state.assign(np.ones(state.shape, np.float32))
    got = stateful.evaluate(
        streams.windows_dataset(x, y), callbacks=[bptt.StateResetter()], return_dict=True, verbose=0
    )
    assert got["bpc"] == pytest.approx(_bpc(twin, whole_x, whole_y), rel=1e-4)
    assert got["loss"] == pytest.approx(_bpc(twin, whole_x, whole_y) * math.log(2) * T, rel=1e-4)
    # The test: a second model of another batch size with the same weights, over the same text.
    x2, y2, whole_x2, whole_y2 = _stream(2, T, None, ids=ids)
    twin2 = _twin(whole_x2.shape[1], model, **options)
    bptt.copy_weights(stateful, twin2)
    test = bptt.evaluate_at_batch(stateful, lambda: build(2), x2, y2, bptt.SequenceLoss(T), [bptt.bpc_metric()])
    assert test["bpc"] == pytest.approx(_bpc(twin2, whole_x2, whole_y2), rel=1e-4)


def test_training_carries_the_state_across_batches_and_resets_it_each_epoch():
    keras.utils.set_random_seed(2)
    B, T, K = 2, 3, 4
    x, y, whole_x, _ = _stream(B, T, K, seed=3)
    model = ptb.build_model(B, T, 50, 5, _carrying("rum", eta=1.0))  # no zoneout: training is deterministic
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=bptt.SequenceLoss(T))
    twin = _twin(K * T, "rum", eta=1.0)
    bptt.copy_weights(model, twin)
    final_state = keras.ops.convert_to_numpy(twin(whole_x)[1][0])
    model.fit(
        streams.epoch_stream(x, y),
        steps_per_epoch=K,
        epochs=2,
        callbacks=[bptt.StateResetter()],
        verbose=0,
        shuffle=False,
    )
    state = keras.ops.convert_to_numpy(model.get_layer("rnn").states[0])
    np.testing.assert_allclose(state, final_state, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already under JAX")
def test_state_is_carried_under_jax_too():
    # Keras' own stateful=True carries nothing under JAX (its state is outside the jitted step).
    pytest.importorskip("jax")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        os.path.abspath(__file__),
        "-k",
        "training_carries",
    ]
    result = subprocess.run(
        cmd,
        cwd=os.path.dirname(os.path.abspath(__file__)),
        capture_output=True,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=300,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-2000:]


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    whole = run_in_process(ptb, TINY + [f"--output_dir={tmp_path / 'whole'}"])
    first = run_in_process(ptb, TINY[:-2] + ["--epochs=1", TINY[-1], f"--output_dir={tmp_path / 'cut'}"])
    assert first["steps"] == 24
    resumed = run_in_process(ptb, TINY + [f"--output_dir={tmp_path / 'cut'}"])
    assert "resuming from step 24" in (tmp_path / "cut" / results.LOG_FILE).read_text()
    for part in ("valid", "test"):
        assert resumed["metrics"][part] == whole["metrics"][part]
    assert resumed["metrics"]["train"]["bpc"] == whole["metrics"]["train"]["bpc"]


def test_configurations_match_the_paper_sizes(tmp_path):
    counts = {}
    for row, model, units in (("fs_rum2", "fs_rum", 1000), ("fs_lstm2", "fs_lstm", 400)):
        config = _parse([f"--flagfile={os.path.join(REPO, 'flags', 'ptb', row + '.cfg')}"], tmp_path)
        assert (config.model, config.units, config.fast_units, config.epochs) == (model, units, 700, 200)
        layers = ptb.recurrent_layers(model, units, 1, 0, config.model_options())
        weights = ptb.build_model(2, 3, 50, 128, layers).trainable_weights
        counts[row] = int(sum(np.prod(w.shape) for w in weights))
    assert counts == {"fs_rum2": 11_247_450, "fs_lstm2": 7_225_050}  # the paper: about 11.2 M and 7.2 M
    config = _parse([f"--flagfile={os.path.join(REPO, 'flags', 'ptb', 'rum1500x2.cfg')}", "--units=32"], tmp_path)
    assert (config.model, config.units, config.num_layers, config.eta, config.epochs) == ("rum", 32, 2, 0.3, 100)
    assert config.model_options()["zoneout_keep_h"] == 0.9 and config.model_options()["use_layer_norm"]
    assert "fast_units" not in config.values() and config.values()["num_layers"] == 2


# What a paper row fixes (the presets of the retired --config set these): each flagfile gives all of them
# that its model takes, so that no row depends on the binary's defaults.
ROW_FLAGS = (
    "model",
    "units",
    "lambda_",
    "eta",
    "use_layer_norm",
    "zoneout_keep_h",
    "capacity",
    "fast_units",
    "fast_layers",
    "keep_prob",
    "zoneout_keep_c",
    "num_layers",
    "embed_size",
    "optimizer",
    "learning_rate",
    "clip_norm",
    "batch_size",
    "num_steps",
    "epochs",
    "lr_drop_epoch",
    "test_batch_size",
    "seed",
)


def _given(path):
    """The flags a flagfile sets, those of the flagfiles it reads (paths from the checkout's root) included."""
    given = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("--flagfile="):
                given |= _given(os.path.join(REPO, line.strip().split("=", 1)[1]))
            elif line.startswith("--"):
                given.add(line.strip()[2:].split("=")[0])
    return given


def test_flagfiles_set_every_value_of_their_row(tmp_path):
    for scale in ("ptb", os.path.join("quick", "ptb")):
        for path in sorted(glob.glob(os.path.join(REPO, "flags", scale, "*.cfg"))):
            given = _given(path)
            config = _parse([f"--flagfile={path}"], tmp_path)
            wanted = {n for n in ROW_FLAGS if config.applies(n)}
            assert wanted <= given, (path, sorted(wanted - given))


def test_defaults_are_the_fs_rum2_row(tmp_path):
    default = _parse([], tmp_path)
    row = _parse([f"--flagfile={os.path.join(REPO, 'flags', 'ptb', 'fs_rum2.cfg')}"], tmp_path)
    assert default == row
    lstm = _parse(["--model=lstm"], tmp_path)  # the other values stay FS-RUM-2's; RUM's are left out
    assert lstm.units == 1000 and "eta" not in lstm.values() and "fast_units" not in lstm.values()


def test_schedule_loss_and_metric():
    schedule = bptt.lr_drop_schedule(2e-3, 181).schedule
    assert schedule(180) == pytest.approx(2e-3) and schedule(181) == pytest.approx(2e-4)
    assert bptt.lr_drop_schedule(2e-3, 0).schedule(500) == pytest.approx(2e-3)
    y = np.zeros((2, 7), np.int32)
    uniform = np.zeros((2, 7, 50), np.float32)
    assert float(bptt.SequenceLoss(7)(y, uniform)) == pytest.approx(7 * math.log(50), rel=1e-6)
    assert float(np.mean(bptt.bits_per_character(y, uniform))) == pytest.approx(math.log2(50), rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num_steps=0"], "--num_steps must be >= 1"),
        (["--config=fs_rum2"], "Unknown command line flag 'config'"),  # the presets are the flagfiles now
        (["--steps=100"], "Unknown command line flag 'steps'"),  # PTB counts --epochs
        (["--eval_batch_size=10"], "Unknown command line flag 'eval_batch_size'"),
        (["--model=rum", "--fast_units=10"], "--fast_units does not apply to --model=rum"),
        (["--model=rum", "--keep_prob=0.5"], "--keep_prob does not apply to --model=rum"),
        (["--model=fs_lstm", "--eta=1"], "--eta does not apply to --model=fs_lstm"),
        (["--num_layers=2"], "--num_layers does not apply to --model=fs_rum"),
        (["--model=fs_lstm", "--num_layers=1"], "--num_layers does not apply to --model=fs_lstm"),
        (["--fast_layers=1"], "--fast_layers must be >= 2"),
        (["--keep_prob=0"], "--keep_prob must be in (0, 1]"),
        (["--zoneout_keep_c=1.5"], "--zoneout_keep_c must be in (0, 1] (or unset)"),
        (["--strategy=mirrored"], "use --strategy=default"),
        (["--task=1"], "Unknown command line flag 'task'"),  # bAbI's
    ],
)
def test_bad_flags_are_one_line_usage_errors(args, message, tmp_path):
    with pytest.raises(training_flags.UsageError) as error:
        _parse(args, tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_or_short_data_stops_before_training(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(files.DataError, match=f"missing PTB file ptb.train.txt: put it at {empty}/ptb/ptb.train.txt"):
        run_in_process(ptb, TINY + [f"--data_dir={empty}", f"--output_dir={tmp_path / 'a'}"])
    with pytest.raises(loop.RunError, match="the training text .--max_chars.: a stream of 30 ids is too short"):
        run_in_process(ptb, TINY + ["--max_chars=30", f"--output_dir={tmp_path / 'b'}"])
    assert not (tmp_path / "b" / results.CHECKPOINT_DIR).exists()
    result = run_subprocess(
        "tasks.ptb",
        [f"--data_dir={empty}", f"--output_dir={tmp_path / 'c'}"],
        env={files.ENV_NO_DOWNLOAD: "1", files.ENV_CACHE_DIR: str(tmp_path / "cache")},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ptb.py: error: missing PTB file ptb.train.txt")


def test_flagfiles_parse(tmp_path):
    for scale in ("ptb", os.path.join("quick", "ptb")):
        folder = os.path.join(REPO, "flags", scale)
        names = sorted(os.listdir(folder))
        rows = ["fs_goru.cfg", "fs_lstm2.cfg", "fs_rum2.cfg", "rum1500x2.cfg", "rum2000.cfg"]
        budget = ["fs_lstm2_epoch1.cfg", "fs_rum2_epoch1.cfg"] if scale == "ptb" else []  # full scale only
        assert names == sorted(rows + budget), folder
        for name in names:
            config = _parse([f"--flagfile={os.path.join(folder, name)}"], tmp_path)
            stem = name[:-4].removesuffix("_epoch1")
            assert config.model == {"fs_rum2": "fs_rum", "fs_lstm2": "fs_lstm", "fs_goru": "fs_goru"}.get(stem, "rum")
            if name in budget:  # the paper row's flags, for its first epoch
                assert config.epochs == 1 and _parse([f"--flagfile={os.path.join(folder, stem)}.cfg"], tmp_path) == (
                    dataclasses.replace(config, epochs=200)
                )
