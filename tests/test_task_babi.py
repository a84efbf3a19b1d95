"""python -m tasks.babi: one task, several tasks with their summary, batching, model, bad input."""

import math
import os

import keras
import numpy as np
import pytest

from rum_tf.config import flags as training_flags
from rum_tf.data import babi as babi_data
from rum_tf.data import files
from rum_tf.training import multitask, results
from tasks import babi
from training_helpers import REPO, assert_complete_outputs, read_json, run_in_process, run_subprocess

pytestmark = pytest.mark.slow  # trains models / runs the task binaries

# Read before any fixture edits the environment; CI sets it, else the sibling shared/data.
DATA_DIR = os.environ.get(files.ENV_DATA_DIR) or os.path.join(os.path.dirname(REPO), "shared", "data")
TINY = [
    "--babi_set=en",
    "--units=8",
    "--embed_size=8",
    "--steps=20",
    "--eval_every=10",
    "--eval_batch_size=200",
    f"--data_dir={DATA_DIR}",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"no data folder at {DATA_DIR} (set {files.ENV_DATA_DIR})")
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))


def test_one_task_writes_complete_outputs(tmp_path):
    out = tmp_path / "qa1"
    summary = run_in_process(babi, TINY + ["--task=1", f"--output_dir={out}"])
    assert assert_complete_outputs(str(out), "babi", with_valid=True) == summary
    info = summary["task_results"]
    assert info["babi_task"] == 1 and info["babi_set"] == "en" and info["task_name"] == "single-supporting-fact"
    assert (info["train_size"], info["valid_size"], info["test_size"]) == (900, 100, 1000)
    assert info["chance"] == pytest.approx(1 / 6) and 0 < info["commonest_answer_baseline"] < 0.3
    assert summary["flags"]["task"] == "1" and summary["model"] == "rum"
    assert "[commonest answer" in (out / results.LOG_FILE).read_text()


def test_several_tasks_train_in_subfolders_then_summarise(tmp_path):
    summary = run_in_process(babi, TINY + ["--task=6, 1", "--model=gru", f"--output_dir={tmp_path}"])
    subs = {}
    for n in (6, 1):
        subs[n] = assert_complete_outputs(str(tmp_path / f"qa{n}"), "babi", with_valid=True)
        assert subs[n]["flags"]["task"] == str(n)
        assert f"--task={n}\n" in (tmp_path / f"qa{n}" / results.FLAGS_FILE).read_text()
    assert summary == read_json(tmp_path / results.RESULTS_FILE)
    assert summary["task"] == "babi" and summary["status"] == "finished" and summary["flags"]["task"] == "6,1"
    for key in results.REQUIRED_KEYS:
        assert key in summary, key
    table = summary["task_results"]["runs"]
    assert list(table) == ["qa6", "qa1"]
    accuracies = [subs[n]["metrics"]["test"]["accuracy"] for n in (6, 1)]
    assert [table[f"qa{n}"]["test_accuracy"] for n in (6, 1)] == accuracies
    assert summary["metrics"]["test"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["task_results"]["mean"]["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["parameters"] == max(s["parameters"] for s in subs.values())
    for name in (
        results.CURVE_CSV,
        results.CURVE_PNG,
        multitask.RUNS_CSV,
        multitask.RUNS_PNG,
        results.FLAGS_FILE,
        results.LOG_FILE,
    ):
        assert os.path.getsize(tmp_path / name) > 0, name
    rows = results.read_curve(str(tmp_path / results.CURVE_CSV))
    assert [r["step"] for r in rows] == [10, 20]
    valid = [s["metrics"]["valid"]["accuracy"] for s in subs.values()]
    assert rows[-1]["val_accuracy"] == pytest.approx(np.mean(valid))
    # A sub-run is the very run `--task=1 --output_dir=<it>` makes: that command reports it, trains nothing.
    again = run_in_process(babi, TINY + ["--task=1", "--model=gru", f"--output_dir={tmp_path / 'qa1'}"])
    assert again == subs[1]
    # The parent run again trains nothing and rewrites its summary to the byte.
    assert summary["finished_at"] == max(s["finished_at"] for s in subs.values())
    written = (tmp_path / results.RESULTS_FILE).read_bytes()
    assert run_in_process(babi, TINY + ["--task=6, 1", "--model=gru", f"--output_dir={tmp_path}"]) == summary
    assert (tmp_path / results.RESULTS_FILE).read_bytes() == written


def test_training_batches_follow_the_official_schedule(tmp_path):
    # a = int(k mod (900 / 32)) = int(k mod 28.125): 28 full batches, a short one of 4 rows, then again.
    assert babi_data.official_batch_rows(0, 900, 32) == slice(0, 32)
    assert babi_data.official_batch_rows(27, 900, 32) == slice(864, 896)
    assert babi_data.official_batch_rows(28, 900, 32) == slice(896, 900)
    assert babi_data.official_batch_rows(29, 900, 32) == slice(0, 32)  # 29 mod 28.125 = 0.875
    assert babi_data.official_batch_rows(56, 900, 32) == slice(864, 896)  # 56 mod 28.125 = 27.875
    babi_task = babi_data.load_task(1, "en", DATA_DIR)
    config = babi.APP.parse(
        ["babi.py", "--task=1", "--babi_set=en", "--units=8", "--embed_size=8", f"--output_dir={tmp_path}"]
    )
    task = babi.make_task(1, babi_task, config)
    train, _ = babi_data.split_validation(babi_task.train)
    x, y = next(iter(task.train_data(28)))
    np.testing.assert_array_equal(x.numpy(), train.inputs[896:900])
    np.testing.assert_array_equal(y.numpy(), train.answer[896:900])
    x, _ = list(task.train_data(27).take(3))[2]  # step 29
    np.testing.assert_array_equal(x.numpy(), train.inputs[:32])


def test_model_story_then_question_into_one_rnn_with_the_official_inits():
    keras.utils.set_random_seed(0)
    V, L = 40, 12
    model = babi.build_model(V, L, lambda **kw: keras.layers.GRU(16, **kw), units=16, embed_size=64)
    assert tuple(model(np.zeros((3, L), np.int32)).shape) == (3, V)
    assert model.get_layer("rnn").return_sequences is False
    embedding = model.get_layer("embedding").embeddings.numpy()
    assert embedding.shape == (V, 64)
    scale = math.sqrt(6 / V)
    assert embedding.mean() == pytest.approx(-scale, abs=0.05) and embedding.std() == pytest.approx(scale, rel=0.1)
    kernel, bias = (w.numpy() for w in model.get_layer("output").weights)
    assert np.abs(kernel).max() <= math.sqrt(6 / (16 + 64)) and np.all(bias == np.float32(0.01))
    uniform = babi.build_model(V, L, lambda **kw: keras.layers.GRU(16, **kw), units=16, embedding_init="uniform")
    values = uniform.get_layer("embedding").embeddings.numpy()
    assert np.abs(values).max() <= scale and abs(values.mean()) < 0.05


def test_rum_learns_task_1_well_above_chance(tmp_path):
    summary = run_in_process(
        babi,
        [
            "--task=1",
            "--babi_set=en",
            "--units=64",
            "--learning_rate=0.003",
            "--steps=120",
            "--eval_every=60",
            "--eval_batch_size=500",
            f"--data_dir={DATA_DIR}",
            f"--output_dir={tmp_path}",
        ],
    )
    # Six places to answer: chance 1/6, the commonest answer about 0.15.
    assert summary["metrics"]["test"]["accuracy"] > 0.35, summary["metrics"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task=21"], "--task must be in 1..20 (or all), got 21"),
        (["--task=0,1"], "--task must be in 1..20 (or all), got 0"),
        (["--task=one"], "--task must be 1..20, a comma-separated list of them, or all; got 'one'"),
        (["--babi_set=en-100k"], "--babi_set"),
        (["--embedding_init=zeros"], "--embedding_init"),
        (["--T=20"], "Unknown command line flag 'T'"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args, message, tmp_path):
    with pytest.raises(training_flags.UsageError) as error:
        babi.APP.parse(["babi.py", f"--output_dir={tmp_path}"] + args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_tasks_list_is_canonical(tmp_path):
    assert babi_data.parse_tasks("all") == list(range(1, 21))
    assert babi_data.parse_tasks(" 3, 1,3 ") == [3, 1]
    assert babi.APP.parse(["babi.py", "--task= 3, 1,3 ", f"--output_dir={tmp_path}"]).task == "3,1"
    assert babi.APP.parse(["babi.py", "--task=ALL", f"--output_dir={tmp_path}"]).task == "all"


def test_sub_run_configs_are_what_their_own_command_lines_give(tmp_path):
    args = ["--babi_set=en", "--model=gru", "--units=8", "--steps=20", "--eval_every=10", f"--data_dir={DATA_DIR}"]
    parent = babi.APP.parse(["babi.py", "--task=6,1", f"--output_dir={tmp_path}"] + args)
    subs = babi.sub_configs(parent)
    assert list(subs) == [6, 1]
    for n, sub in subs.items():
        alone = babi.APP.parse(["babi.py", f"--task={n}", f"--output_dir={tmp_path / f'qa{n}'}"] + args)
        assert sub == alone
        assert sub.run_config() == alone.run_config()
    assert parent.task == "6,1"  # the parent config is left as it was


def test_missing_file_stops_before_training_with_one_line(tmp_path):
    # A data folder of links to the en-10k files less qa3 train: --task=all must stop before its first task.
    missing = "qa3_three-supporting-facts_train.txt"
    source, data_dir = os.path.join(DATA_DIR, "babi", "tasks_1-20_v1-2", "en-10k"), tmp_path / "data"
    (data_dir / "babi" / "tasks_1-20_v1-2" / "en-10k").mkdir(parents=True)
    for name in sorted(set(os.listdir(source)) - {missing}):
        (data_dir / "babi" / "tasks_1-20_v1-2" / "en-10k" / name).symlink_to(os.path.join(source, name))
    with pytest.raises(
        files.DataError, match="missing bAbI file tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"
    ):
        run_in_process(babi, ["--task=all", "--babi_set=en-10k", f"--data_dir={data_dir}", f"--output_dir={tmp_path}"])
    assert not (tmp_path / "qa1").exists()
    result = run_subprocess(
        "tasks.babi",
        ["--task=2,3", "--babi_set=en-10k", f"--data_dir={data_dir}", f"--output_dir={tmp_path}"],
        env={files.ENV_NO_DOWNLOAD: "1", files.ENV_CACHE_DIR: str(tmp_path / "cache")},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("babi.py: error: missing bAbI file") and "qa3_three-supporting-facts_train.txt" in line


def test_flagfiles_parse(tmp_path):
    for scale in ("babi", os.path.join("quick", "babi")):
        folder = os.path.join(REPO, "flags", scale)
        names = sorted(os.listdir(folder))
        assert names == ["goru_en.cfg", "gru_en.cfg", "lstm_en.cfg", "rum_en.cfg", "rum_en10k.cfg"], folder
        for name in names:
            config = babi.APP.parse(["babi.py", f"--flagfile={os.path.join(folder, name)}", f"--output_dir={tmp_path}"])
            assert config.babi_set == ("en-10k" if "en10k" in name else "en")
