"""The shared flags: every flagfile parses and builds its model; bad input is one line."""

import glob
import os

import pytest
from absl import flags

from rum_tf.training import flags as training_flags
from rum_tf.training import results
from tasks import copying, recall
from training_helpers import FLAGS_DIR, run_in_process, run_subprocess

FLAGS = flags.FLAGS
BINARIES = {"copying": copying, "recall": recall}


def _flagfiles():
    found = []
    for task, module in BINARIES.items():
        for path in sorted(glob.glob(os.path.join(FLAGS_DIR, task, "*.cfg"))
                           + glob.glob(os.path.join(FLAGS_DIR, "quick", task, "*.cfg"))):
            found.append(pytest.param(module, path, id=os.path.relpath(path, FLAGS_DIR)))
    return found


@pytest.mark.parametrize("module,path", _flagfiles())
def test_flagfile_parses_and_builds_its_model(module, path, tmp_path):
    from absl.testing import flagsaver

    with flagsaver.flagsaver():
        module.APP.parse(["prog", f"--flagfile={path}", f"--output_dir={tmp_path}"])
        model = module.build_model(FLAGS.T, module.APP.recurrent_layer)
        assert model.count_params() > 0
        assert FLAGS.steps % FLAGS.eval_every == 0
        row = {n: FLAGS[n].value for n in ("model", "lambda_", "eta", "optimizer", "learning_rate")}
    name = os.path.basename(path)
    full = os.path.join(FLAGS_DIR, module.APP.task, name)
    assert os.path.exists(full), f"quick row {name} has no full-scale row"
    if full != path:  # a quick row is the same paper row, only smaller
        with flagsaver.flagsaver():
            module.APP.parse(["prog", f"--flagfile={full}", f"--output_dir={tmp_path}"])
            assert row == {n: FLAGS[n].value for n in row}


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
    (copying, ["--steps=150", "--eval_every=100"], "--steps must be a multiple of --eval_every"),
    (copying, ["--train_size=5"], "--train_size does not apply to the copying task"),  # recall's flag
    (copying, ["--zoneout_keep_h=1.5"], "--zoneout_keep_h must be in (0, 1]"),
    (recall, ["--T=7"], "--T must be an even number >= 2"),
    (recall, ["--valid_size=0"], "--valid_size must be >= 1"),
    (recall, ["--learning_rate=0"], "--learning_rate must be > 0"),
    (recall, ["extra"], "unexpected arguments: extra"),
    (recall, ["--stop_when=val_accuracy=1"], "is not METRIC OP THRESHOLD[:TIMES]"),
    (recall, ["--stop_when=val_accuracy>=high"], "threshold 'high' is not a number"),
    (copying, ["--stop_when=loss<=0.01:0"], "TIMES must be a whole number >= 1"),
]


@pytest.mark.parametrize("module,args,message", BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_bad_flags_are_one_line_usage_errors(module, args, message, tmp_path):
    from absl.testing import flagsaver

    with flagsaver.flagsaver(), pytest.raises(training_flags.UsageError) as error:
        module.APP.parse(["prog", f"--output_dir={tmp_path}"] + args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_output_dir_must_be_given_and_writable(tmp_path):
    from absl.testing import flagsaver

    blocker = tmp_path / "file"
    blocker.write_text("")
    with flagsaver.flagsaver(), pytest.raises(training_flags.UsageError, match="--output_dir is required"):
        copying.APP.parse(["prog"])
    with flagsaver.flagsaver(), pytest.raises(training_flags.UsageError, match="is not a writable folder"):
        copying.APP.parse(["prog", f"--output_dir={blocker}/run"])


def test_defaults_are_the_official_settings(tmp_path):
    from absl.testing import flagsaver

    with flagsaver.flagsaver():
        recall.APP.parse(["prog", f"--output_dir={tmp_path}"])
        assert (FLAGS.T, FLAGS.units, FLAGS.optimizer, FLAGS.eval_every, FLAGS.steps) == (30, 50, "adam", 1000, 100_000)
        copying.APP.parse(["prog", f"--output_dir={tmp_path}"])  # another binary in the same process
        assert (FLAGS.T, FLAGS.units, FLAGS.optimizer, FLAGS.eval_every) == (200, 100, "rmsprop", 100)
        assert copying.APP.model_label() == "rum"


@pytest.mark.parametrize("module", ["tasks.copying", "tasks.recall"])
def test_binary_bad_flag_exits_with_one_line(module, tmp_path):
    result = run_subprocess(module, ["--lambda_=3", f"--output_dir={tmp_path}"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"{module.split('.')[1]}.py: error: flag --lambda_=3: --lambda_ must be 0 or 1"
    assert not os.listdir(tmp_path)  # nothing was started


def test_resolved_flags_file_repeats_the_run(tmp_path):
    out = tmp_path / "run"
    args = ["--T=4", "--units=4", "--batch_size=4", "--steps=2", "--eval_every=2", "--test_size=4", "--model=gru",
            f"--output_dir={out}"]
    first = run_in_process(copying, args)
    text = (out / results.FLAGS_FILE).read_text()
    assert "--model=gru" in text and "--lambda_" not in text  # RUM arguments left out for GRU
    again = run_in_process(copying, [f"--flagfile={out / results.FLAGS_FILE}"])
    assert again == first  # same flags: the finished run is reported, not retrained
