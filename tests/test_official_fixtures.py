"""Checkpoints written by the official scripts themselves load, and compute what the official graph computed.

tests/fixtures/official/ holds, per era of the official code and per task, the `tf.train.Saver`
checkpoint the official script saved after 200 training steps at toy sizes, and the official
graph's own outputs: the logits on the rum_tf test set (copying, recall: official_logits.npz,
with the inputs x and targets y) or the test BPC the PTB script wrote (test_2.txt). How each
was made (repository, commit, command) is in docs/OFFICIAL.md, "Fixtures".
"""

import pathlib

import keras
import numpy as np
import pytest

import rum_tf
from rum_tf import official
from rum_tf.data import copying as copying_data
from rum_tf.data import recall as recall_data

pytest.importorskip("tensorflow")

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "official"
UNITS, COPY_T, RECALL_T = 8, 10, 6

# fixture: (task, the RUM options of the official run, the layout its cell has)
SYNTHETIC = {
    "2017_copying_rum": ("copying", dict(use_embedding_bias=True), "rum_2017"),
    "2017_copying_arum": ("copying", dict(lambda_=1, eta=2.0, use_embedding_bias=True), "rum_2017"),
    "2017_recall_arum": ("recall", dict(lambda_=1, eta=0.5, use_embedding_bias=True), "rum_2017"),
    "2018_copying_rum": ("copying", dict(), "rum_2018"),
    "2018_copying_arum": ("copying", dict(lambda_=1, eta=2.0), "rum_2018"),
    "2018_recall_arum": ("recall", dict(lambda_=1, eta=0.5), "rum_2018"),
    "later_copying_rum": ("copying", dict(), "rum"),
    "later_copying_arum": ("copying", dict(lambda_=1, eta=2.0), "rum"),
    "later_recall_arum": ("recall", dict(lambda_=1, eta=0.5), "rum"),
}


def _official(name):
    z = np.load(FIXTURES / name / "official_logits.npz")
    return z["x"].astype(np.int32), z["y"].astype(np.int64), z["logits"].astype(np.float64)


def _depth(task):
    return copying_data.INPUT_DEPTH if task == "copying" else recall_data.vocab_size(RECALL_T)


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    return np.log(np.exp(logits).sum(-1)) - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def _assert_same_logits(got, want):
    """Within 1e-4 of the official logits, relative to their largest magnitude."""
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale, (np.abs(got - want).max(), scale)


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_official_checkpoint_restores_to_the_official_logits(name):
    task, options, layout = SYNTHETIC[name]
    x, _, want = _official(name)
    prefix = str(FIXTURES / name / "model")
    variables, read = official.read_variables(prefix)
    scope = "rnn/arum_cell" if name.startswith(("2017", "2018")) and options.get("lambda_") else "rnn/rum_cell"
    assert official.describe_rum(variables, scope) == {
        "layout": layout,
        "units": UNITS,
        "input_size": _depth(task),
        "update_gate": True,
        "use_embedding_bias": options.get("use_embedding_bias", False),
        "use_layer_norm": False,
        "lambda_": None if layout == "rum" else options.get("lambda_", 0),
    }
    layer = rum_tf.RUM(UNITS, return_sequences=task == "copying", **options)
    layer.build((None, None, _depth(task)))
    assigned = official.restore(layer, prefix, "rnn")  # no renaming: the scope above the cell
    assert all(scope in (n if isinstance(n, str) else n[0]) for n in assigned.values())
    hidden = keras.ops.convert_to_numpy(layer(copying_data.one_hot(x, _depth(task))))
    _assert_same_logits(hidden.astype(np.float64) @ read("V_weights") + read("V_bias"), want)


def test_official_lambda_is_checked_by_restore():
    layer = rum_tf.RUM(UNITS, eta=2.0, use_embedding_bias=True)
    layer.build((None, None, copying_data.INPUT_DEPTH))
    with pytest.raises(ValueError, match=r"is an ARUMCell \(lambda=1\): build rum_cell with lambda_=1$"):
        official.restore(layer, str(FIXTURES / "2017_copying_arum" / "model"), "rnn")


def test_no_layout_found_lists_the_cell_like_scopes():
    layer = rum_tf.RUM(UNITS, use_embedding_bias=True)
    layer.build((None, None, copying_data.INPUT_DEPTH))
    with pytest.raises(ValueError) as info:
        official.restore(layer, str(FIXTURES / "2017_copying_rum" / "model"), "Model")
    message = str(info.value)
    assert "\n" not in message
    assert "tried the layouts rum, rum_no_update_gate, rum_2018, rum_2017" in message
    listed = "cell-like scopes in the checkpoint: rnn/rum_cell (rum_2017 layout: candidate/bias, candidate/kernel"
    assert listed in message


@pytest.mark.slow
def test_copying_binary_loads_the_paper_time_arum_and_checks_its_flags(tmp_path):
    from rum_tf.training import loop
    from tasks import copying
    from training_helpers import run_in_process

    x, y, logits = _official("2017_copying_arum")
    prefix = str(FIXTURES / "2017_copying_arum" / "model")
    base = [f"--T={COPY_T}", f"--test_size={len(x)}", "--batch_size=8", f"--init_from_official={prefix}"]
    right = ["--lambda_=1", "--eta=2.0", "--use_embedding_bias"]
    summary = run_in_process(copying, base + right + [f"--units={UNITS}", f"--output_dir={tmp_path / 'run'}"])
    assert summary["steps"] == 0
    np.testing.assert_array_equal(copying_data.copying_test_set(len(x), COPY_T, seed=0)[0], x)  # the same test set
    np.testing.assert_allclose(summary["metrics"]["test"]["loss"], _cross_entropy(logits, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(summary["metrics"]["test"]["accuracy"], (logits.argmax(-1) == y).mean())

    contradictions = {
        "--lambda_=0": r"the checkpoint has an ARUMCell \(lambda=1\) at rnn/arum_cell: pass --lambda_=1",
        "--use_embedding_bias=false": r"the checkpoint has a candidate bias in .*: pass --use_embedding_bias",
        "--use_layer_norm": r"the checkpoint has no layer norm .* in rnn/arum_cell: pass --use_layer_norm=false",
        "--units=9": r"the checkpoint has a RUM cell of 8 units \(rnn/arum_cell\): pass --units=8",
    }
    for i, (flag, message) in enumerate(contradictions.items()):
        args = base + right + [f"--units={UNITS}", flag]
        with pytest.raises(loop.RunError, match=rf"^--init_from_official={prefix}: {message}$"):
            run_in_process(copying, args + [f"--output_dir={tmp_path / str(i)}"])


@pytest.mark.slow
@pytest.mark.parametrize("era", ["2017", "2018", "later"])
def test_ptb_binary_matches_the_official_test_bpc(era, tmp_path, data_dir, monkeypatch):
    """FS-RUM (fast 2 x 8, slow 8, embedding 8) of each era's PTB script, on the official run's data cut."""
    from rum_tf.data import files
    from tasks import ptb
    from training_helpers import run_in_process

    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    official_bpc = float((FIXTURES / f"{era}_ptb_fs_rum" / "test_2.txt").read_text().split()[1])
    args = [
        "--fast_units=8",
        "--units=8",
        "--embed_size=8",
        "--eta=1.0",
        "--num_steps=10",
        "--batch_size=4",
        "--max_chars=8004",
        "--max_eval_chars=1000",
        f"--test_batch_size={20 if era == '2018' else 1}",  # the script's eval_config.batch_size
        f"--data_dir={data_dir}",
        f"--init_from_official={FIXTURES / f'{era}_ptb_fs_rum' / 'model.ckpt'}",
    ]
    if era == "2017":
        args.append("--use_embedding_bias")  # _linear always made the candidate bias
    summary = run_in_process(ptb, args + [f"--output_dir={tmp_path / 'run'}"])
    assert summary["steps"] == 0
    assert abs(summary["metrics"]["test"]["bpc"] - official_bpc) < 1e-3
