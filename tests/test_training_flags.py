"""The task configs: declared once, parsed from flags into frozen objects; bad input is one line."""

import dataclasses
import glob
import os
import subprocess
import sys

import pytest
from absl import flags as absl_flags

import rum_tf
from rum_tf.config import flags as training_flags
from rum_tf.config import models, options
from rum_tf.training import callbacks, loop, results
from tasks import babi, copying, ptb, recall
from training_helpers import FLAGS_DIR, REPO, run_in_process, run_subprocess

BINARIES = {"copying": copying, "recall": recall}


def _flagfiles():
    found = []
    for task, module in BINARIES.items():
        for path in sorted(
            glob.glob(os.path.join(FLAGS_DIR, task, "*.cfg"))
            + glob.glob(os.path.join(FLAGS_DIR, "quick", task, "*.cfg"))
        ):
            found.append(pytest.param(module, path, id=os.path.relpath(path, FLAGS_DIR)))
    return found


@pytest.mark.parametrize("module,path", _flagfiles())
def test_flagfile_parses_and_builds_its_model(module, path, tmp_path):
    config = module.APP.parse(["prog", f"--flagfile={path}", f"--output_dir={tmp_path}"])
    model = module.build_model(config.T, models.builder(config))
    assert model.count_params() > 0
    assert config.steps % config.eval_every == 0
    row = {n: getattr(config, n) for n in ("model", "lambda_", "eta", "optimizer", "learning_rate")}
    name = os.path.basename(path)
    full = os.path.join(FLAGS_DIR, module.APP.task, name)
    assert os.path.exists(full), f"quick row {name} has no full-scale row"
    if full != path:  # a quick row is the same paper row, only smaller
        config = module.APP.parse(["prog", f"--flagfile={full}", f"--output_dir={tmp_path}"])
        assert row == {n: getattr(config, n) for n in row}


def test_every_full_row_has_a_quick_row():
    for task in BINARIES:
        full = sorted(os.listdir(os.path.join(FLAGS_DIR, task)))
        assert full and full == sorted(os.listdir(os.path.join(FLAGS_DIR, "quick", task)))


BAD = [
    (copying, ["--T=0"], "--T must be >= 1"),
    (copying, ["--batch_size=0"], "--batch_size must be >= 1"),
    (copying, ["--lambda_=2"], "--lambda_ must be 0 or 1"),
    (copying, ["--eta=0"], "--eta must be > 0"),
    (copying, ["--eta=-1"], "--eta must be > 0"),
    (copying, ["--model=nosuch"], "unknown --model=nosuch; choose from "),
    (copying, ["--optimizer=sgd"], "--optimizer=sgd: value should be one of"),
    (copying, ["--model=lstm", "--lambda_=1"], "--lambda_ does not apply to --model=lstm"),
    (copying, ["--model=lstm", "--lambda_=0"], "--lambda_ does not apply to --model=lstm"),  # given, even = default
    (copying, ["--model=gru", "--capacity=3"], "--capacity does not apply to --model=gru"),
    (copying, ["--steps=150", "--eval_every=100"], "--steps must be a multiple of --eval_every"),
    (copying, ["--train_size=5"], "Unknown command line flag 'train_size'"),  # recall's flag
    (copying, ["--zoneout_keep_h=1.5"], "--zoneout_keep_h must be in (0, 1]"),
    (copying, ["--checkpoint_every=0"], "--checkpoint_every must be >= 1 (or unset)"),
    (recall, ["--T=7"], "--T must be an even number >= 2"),
    (recall, ["--valid_size=0"], "--valid_size must be >= 1"),
    (recall, ["--learning_rate=0"], "--learning_rate must be > 0"),
    (recall, ["--rmsprop_decay=1"], "--rmsprop_decay must be in [0, 1)"),  # the open end of within="[0, 1)"
    (recall, ["--clip_norm=-0.5"], "--clip_norm must be >= 0 (or unset)"),
    (recall, ["extra"], "unexpected arguments: extra"),
    (recall, ["--stop_when=val_accuracy=1"], "is not METRIC OP THRESHOLD[:TIMES]"),
    (recall, ["--stop_when=val_accuracy>=high"], "threshold 'high' is not a number"),
    (copying, ["--stop_when=loss<=0.01:0"], "TIMES must be a whole number >= 1"),
]


@pytest.mark.parametrize("module,args,message", BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_bad_flags_are_one_line_usage_errors(module, args, message, tmp_path):
    with pytest.raises(training_flags.UsageError) as error:
        module.APP.parse(["prog", f"--output_dir={tmp_path}"] + args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_output_dir_must_be_given_and_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(training_flags.UsageError, match="--output_dir is required"):
        copying.APP.parse(["prog"])
    with pytest.raises(training_flags.UsageError, match="is not a writable folder"):
        copying.APP.parse(["prog", f"--output_dir={blocker}/run"])


def test_defaults_are_the_official_settings(tmp_path):
    config = recall.APP.parse(["prog", f"--output_dir={tmp_path}"])
    assert (config.T, config.units, config.optimizer, config.eval_every, config.steps) == (
        30,
        50,
        "adam",
        1000,
        100_000,
    )
    config = copying.APP.parse(["prog", f"--output_dir={tmp_path}"])  # another binary in the same process
    assert (config.T, config.units, config.optimizer, config.eval_every) == (200, 100, "rmsprop", 100)
    assert config.model_label() == "rum"
    assert recall.APP.parse(["prog", f"--output_dir={tmp_path}", "--lambda_=1", "--eta=0.1"]).model_label() == (
        "rum lambda_=1 eta=0.1"
    )


def test_config_is_frozen_and_validated(tmp_path):
    config = copying.APP.parse(["prog", f"--output_dir={tmp_path}"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.units = 7
    assert dataclasses.replace(config, units=7).units == 7 and config.units == 100
    with pytest.raises(ValueError, match="--units must be >= 1"):
        dataclasses.replace(config, units=0)  # a variant is checked as the command line is
    with pytest.raises(ValueError, match="--T must be an even number"):
        dataclasses.replace(recall.APP.parse(["prog", f"--output_dir={tmp_path}"]), T=5)


def test_parsing_touches_no_global_flag(tmp_path):
    names = {f.name for s in training_flags.SYNTHETIC for f in dataclasses.fields(s)}
    before = {name: absl_flags.FLAGS[name].value for name in names if name in absl_flags.FLAGS}
    copying.APP.parse(["prog", f"--output_dir={tmp_path}", "--units=7", "--T=9"])
    assert {name: absl_flags.FLAGS[name].value for name in names if name in absl_flags.FLAGS} == before
    assert not names & set(absl_flags.FLAGS)  # the binaries define nothing in absl's global FLAGS


def test_every_model_option_is_declared_once_in_a_section():
    declared = [f.name for s in (training_flags.Model, training_flags.FastSlow) for f in dataclasses.fields(s)]
    assert declared[:2] == ["model", "units"] and len(declared) == len(set(declared))
    assert sorted(models.model_options()) == sorted(declared[2:])
    assert [f.name for f in dataclasses.fields(training_flags.FastSlow)] == [
        "fast_units", "fast_layers", "keep_prob", "zoneout_keep_c"
    ]  # fmt: skip
    # RUM's options are RUMCell's arguments, by their names
    assert set(models.get("rum").options) <= set(rum_tf.RUM.CELL_ARGS)
    assert models.get("rum").options == models.get("fs_rum").options[: len(models.get("rum").options)]


def test_a_model_declares_its_options_once():
    other = options.integer(0, "another --lambda_")
    with pytest.raises(ValueError, match="declared differently"):
        models.register("test_twice", options={"lambda_": other})(lambda units, **kwargs: None)
    assert "test_twice" not in models.names()


def _fresh_python(code):
    """The last line `code` prints in a new interpreter, where nothing was imported before it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_harness_imports_no_configuration():
    """rum_tf.config sits above rum_tf.training: a Python caller of loop.run loads no flags and no registry."""
    modules = "loop, multitask, run_folder, callbacks, checkpoints, results, distribute"
    code = f"import sys; from rum_tf.training import {modules}; print([m for m in sys.modules if 'rum_tf.config' in m])"
    assert _fresh_python(code) == "[]"


def test_registry_is_complete_in_a_fresh_process_that_imports_only_models():
    code = "from rum_tf.config import models; print(' '.join(models.names()))"
    assert _fresh_python(code).split() == ["eunn", "fs_goru", "fs_lstm", "fs_rum", "goru", "gru", "lstm", "rnn", "rum"]


def test_which_option_a_model_takes_is_the_registry():
    assert models.takes("rum", "lambda_") and not models.takes("lstm", "lambda_")
    assert models.takes("fs_rum", "fast_units") and not models.takes("rum", "fast_units")
    assert models.takes("rum", "num_layers") and not models.takes("fs_lstm", "num_layers")
    assert models.takes("lstm", "batch_size")  # not a model option: every model
    with pytest.raises(ValueError, match="--model=lstm does not take lambda_"):
        models.recurrent_layer("lstm", 4, options={"lambda_": 1})


@pytest.mark.parametrize("module", ["tasks.copying", "tasks.recall"])
def test_binary_bad_flag_exits_with_one_line(module, tmp_path):
    result = run_subprocess(module, ["--lambda_=3", f"--output_dir={tmp_path}"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"{module.split('.')[1]}.py: error: flag --lambda_=3: --lambda_ must be 0 or 1"
    assert not os.listdir(tmp_path)  # nothing was started


def test_binary_model_option_of_another_model_exits_with_one_line(tmp_path):
    result = run_subprocess("tasks.ptb", ["--model=rum", "--fast_units=8", f"--output_dir={tmp_path}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "ptb.py: error: --fast_units does not apply to --model=rum"


def test_help_lists_the_binary_flags():
    result = run_subprocess("tasks.recall", ["--helpshort"])
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("--train_size", "--lambda_", "--T", "--checkpoint_every", "--output_dir"):
        assert name in result.stdout, name
    assert "Associative recall" in result.stdout and "--fast_units" not in result.stdout


@pytest.mark.slow
def test_resolved_flags_file_repeats_the_run(tmp_path):
    out = tmp_path / "run"
    args = [
        "--T=4",
        "--units=4",
        "--batch_size=4",
        "--steps=2",
        "--eval_every=2",
        "--test_size=4",
        "--model=gru",
        f"--output_dir={out}",
    ]
    first = run_in_process(copying, args)
    text = (out / results.FLAGS_FILE).read_text()
    assert "--model=gru" in text and "--lambda_" not in text  # RUM arguments left out for GRU
    again = run_in_process(copying, [f"--flagfile={out / results.FLAGS_FILE}"])
    assert again == first  # same flags: the finished run is reported, not retrained


def test_the_harness_settings_default_as_their_flags_do():
    """`loop.RunConfig` (the harness' Python API) and the flag sections Run and Optimizer name the same
    settings: their defaults, and which of them may change between sessions, agree."""
    flag_fields = {f.name: f for section in (options.Run, options.Optimizer) for f in dataclasses.fields(section)}
    shared = [f for f in dataclasses.fields(loop.RunConfig) if f.name in flag_fields]
    assert len(shared) >= 12
    for field in shared:
        if field.default is not dataclasses.MISSING:  # steps and eval_every are required in Python
            assert field.default == flag_fields[field.name].default, field.name
    neutral = {name for name, f in flag_fields.items() if f.metadata["resume_neutral"]}
    assert set(loop.RunConfig(task="t", output_dir="o", steps=1, eval_every=1).resume_neutral) == neutral


def test_run_config_carries_the_config(tmp_path):
    config = copying.APP.parse(
        ["prog", f"--output_dir={tmp_path}", "--steps=40", "--eval_every=20", "--seed=3", "--stop_when=loss<=0.1"]
    )
    run = config.run_config()
    assert (run.task, run.steps, run.eval_every, run.seed) == ("copying", 40, 20, 3)
    # --stop_when is parsed once, when the flags are: the harness gets the rule object, the files its text.
    assert run.stop_when is config.stop_when and run.stop_when == callbacks.StopRule("loss", "<=", 0.1, 1)
    assert run.flags["stop_when"] == "loss<=0.1:1"
    assert run.flags == config.values() and run.flagfile_text == config.flagfile_text()
    assert {"steps", "stop_when", "output_dir", "jit_compile", "strategy", "tpu", "checkpoint_every"} == set(
        run.resume_neutral
    )
    assert run.checkpoint_every is None
    assert (
        copying.APP.parse(["prog", f"--output_dir={tmp_path}", "--checkpoint_every=5"]).run_config().checkpoint_every
        == 5
    )
    neutral = ptb.APP.parse(["prog", f"--output_dir={tmp_path}"]).run_config(steps=1, eval_every=1).resume_neutral
    assert {"epochs", "data_dir"} <= set(neutral)
    assert "data_dir" in babi.APP.parse(["prog", f"--output_dir={tmp_path}"]).run_config().resume_neutral


def _toy_task(**hooks):
    import keras
    import numpy as np

    from rum_tf.data import streams

    def build():
        x = keras.Input((3,))
        return keras.Model(x, keras.layers.Dense(2, name="dense")(x))

    arrays = (np.ones((8, 3), np.float32), np.zeros((8,), np.int32))
    return loop.Task(
        name="toy",
        build_model=build,
        train_data=lambda step: streams.cyclic_batches(arrays, 4, step),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        test_data=lambda: streams.fixed_batches(arrays, 4),
        **hooks,
    )


def test_task_hooks_data_errors_finish_results_and_resume_neutral(tmp_path):
    class Missing(Exception):
        pass

    def missing(step):
        raise Missing("missing file data.txt:\nput it at DIR")

    config = loop.RunConfig(task="toy", output_dir=str(tmp_path / "a"), steps=2, eval_every=2, flags={"x": 1})
    with pytest.raises(loop.RunError, match="^missing file data.txt: put it at DIR$"):
        loop.run(dataclasses.replace(_toy_task(data_errors=(Missing,)), train_data=missing), config)
    summary = loop.run(_toy_task(finish_results=lambda s: {"steps_twice": 2 * s["steps"]}), config)
    assert summary["task_results"] == {"steps_twice": 4}
    moved = dataclasses.replace(config, flags={"x": 1, "old_label": "a"})
    with pytest.raises(loop.RunError, match="old_label"):
        loop.run(_toy_task(), moved)
    assert loop.run(_toy_task(resume_neutral=("old_label",)), moved) == summary


def test_task_binaries_are_thin_and_import_no_tensorflow():
    import ast

    # The four task binaries (the checkout's other tooling, e.g. the benchmark's TensorFlow rows, may use it).
    for path in [os.path.join(REPO, "tasks", f"{name}.py") for name in ("copying", "recall", "babi", "ptb")]:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.split(".")[0] == "tensorflow"}, path
        assert not {m for m in imported if m == "absl.flags"}, path  # the config is declared, not defined in FLAGS
