"""The input pipelines: tf.data on the TensorFlow backend, `streams.Batches` elsewhere, the same batches.

Each task's stream is built both ways in this process (the choice forced through
`streams.uses_tf_data`) and compared batch by batch, from several start steps; then Keras
trains on both to the same weights, and a JAX run without TensorFlow resumes exactly.
"""

import csv
import itertools
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from rum_tf.data import copying, ptb, recall, streams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _babi_like_batch_fn():
    """The bAbI binary's official batching: rows a*B .. a*B+B-1, clipped, so the last batch is smaller."""
    x = np.random.default_rng(0).integers(0, 30, size=(23, 7)).astype(np.int32)
    y = np.arange(23, dtype=np.int32)

    def batch(step):
        a = int(step % (len(y) / 5))
        rows = slice(a * 5, min((a + 1) * 5, len(y)))
        return x[rows], y[rows]

    return batch


def _ptb_windows(batch=3, num_steps=4):
    ids = np.random.default_rng(1).integers(0, 50, size=200).astype(np.int32)
    return ptb.bptt_batches(ids, batch, num_steps)


_RECALL = recall.recall_data(6, train_size=37, valid_size=5, test_size=11, seed=2)
_WINDOWS = _ptb_windows()

# name -> (start_step -> stream, how many batches to compare)
STREAMS = {
    "copying": (lambda s: copying.copying_dataset(4, 5, seed=3, start_step=s), 4),
    "recall_cyclic": (lambda s: streams.cyclic_batches(_RECALL.train, 8, s), 12),  # wraps around 37 rows
    "babi_generated": (lambda s: streams.generated_batches(_babi_like_batch_fn(), s), 12),
    "ptb_epoch_stream": (lambda s: streams.epoch_stream(*_WINDOWS, s), 2 * len(_WINDOWS[0]) + 1),
    "fixed": (lambda s: streams.fixed_batches(_RECALL.test, 4), None),
    "windows": (lambda s: streams.windows_dataset(*_WINDOWS), None),
}


def _take(stream, n):
    """The first n batches (all of a finite stream when n is None), as tuples of NumPy arrays."""
    batches = stream if n is None else itertools.islice(iter(stream), n)
    return [tuple(np.asarray(a) for a in batch) for batch in batches]


def _build(monkeypatch, tf_data, make, start):
    monkeypatch.setattr(streams, "uses_tf_data", lambda: tf_data)
    return make(start)


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("start", [0, 3, 17])
def test_neutral_stream_yields_the_tf_data_batches(monkeypatch, name, start):
    pytest.importorskip("tensorflow")
    make, n = STREAMS[name]
    neutral = _build(monkeypatch, False, make, start)
    assert isinstance(neutral, streams.Batches)
    want = _take(_build(monkeypatch, True, make, start), n)
    got = _take(neutral, n)
    assert len(got) == len(want) > 0
    for k, (g, w) in enumerate(zip(got, want)):
        assert [(a.dtype, a.shape) for a in g] == [(a.dtype, a.shape) for a in w], (name, k)
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} batch {k} from step {start}")


def test_batches_index_from_their_start_and_end_where_they_say():
    stream = streams.Batches(lambda k: (np.full(2, k),), start=5)
    assert stream.num_batches is None and stream[0][0].tolist() == [5, 5] and stream[10][0].tolist() == [15, 15]
    finite = streams.Batches(lambda i: (np.arange(5)[2 * i : 2 * i + 2],), num_batches=3)
    assert finite.num_batches == 3 and [b[0].tolist() for b in finite] == [[0, 1], [2, 3], [4]]
    with pytest.raises(IndexError):
        finite[3]


def _fit_weights(monkeypatch, tf_data, restart_each_epoch=False):
    """Dense weights after 3 epochs x 4 steps on the cyclic recall stream from step 2.

    One stream spans the epochs, as in the harness; `restart_each_epoch` instead gives each
    epoch a stream restarted at step 2, what an input that forgot its position would do.
    """
    monkeypatch.setattr(streams, "uses_tf_data", lambda: tf_data)
    keras.utils.set_random_seed(0)
    x, y = _RECALL.train
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    train = streams.cyclic_batches((x.astype(np.float32), y), 8, 2)
    valid = streams.fixed_batches((_RECALL.valid.x.astype(np.float32), _RECALL.valid.y), 2)
    if restart_each_epoch:
        for _ in range(3):
            model.fit(streams.Batches(train.batch_fn, num_batches=4, start=2), epochs=1, shuffle=False, verbose=0)
    else:
        model.fit(train, epochs=3, steps_per_epoch=4, shuffle=False, validation_data=valid, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


def test_keras_trains_on_both_kinds_to_the_same_weights(monkeypatch):
    neutral = _fit_weights(monkeypatch, False)
    if keras.backend.backend() == "tensorflow":
        for a, b in zip(neutral, _fit_weights(monkeypatch, True)):
            np.testing.assert_array_equal(a, b)
    # The stream crossed 3 epochs (12 batches over 37 rows): restarted, it gives other weights.
    restarted = _fit_weights(monkeypatch, False, restart_each_epoch=True)
    assert not all(np.array_equal(a, b) for a, b in zip(neutral, restarted))


# Whole run vs. one cut at step 10 and continued, under JAX with TensorFlow made unimportable.
_JAX_RESUME = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # as on a machine without TensorFlow
    import keras
    import numpy as np
    from rum_tf.data import recall
    from rum_tf.data import streams
    from rum_tf.training import loop

    assert keras.backend.backend() == "jax"
    data = recall.recall_data(6, train_size=37, valid_size=8, test_size=8, seed=0)
    onehot = lambda split: (np.eye(recall.vocab_size(6), dtype=np.float32)[split.x].reshape(len(split.y), -1), split.y)

    def task():
        def build():
            inp = keras.Input((9 * recall.vocab_size(6),))
            return keras.Model(inp, keras.layers.Dense(10, name="out")(keras.layers.Dense(16, "tanh")(inp)))
        return loop.Task(name="toy", build_model=build,
                         train_data=lambda step: streams.cyclic_batches(onehot(data.train), 8, step),
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         valid_data=lambda: streams.fixed_batches(onehot(data.valid), 3),
                         test_data=lambda: streams.fixed_batches(onehot(data.test), 3))

    def config(out, steps):
        return loop.RunConfig(task="toy", output_dir=out, steps=steps, eval_every=5, optimizer="adam",
                              learning_rate=0.05, flags={"units": 16}, flagfile_text="--units=16\\n")

    out = sys.argv[1]
    whole = loop.run(task(), config(out + "/whole", 20))
    loop.run(task(), config(out + "/cut", 10))
    resumed = loop.run(task(), config(out + "/cut", 20))
    print(json.dumps({"whole": whole["metrics"], "resumed": resumed["metrics"],
                      "curves": [open(f"{out}/{d}/curve.csv").read().splitlines() for d in ("whole", "cut")]}))
""")


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="runs its own JAX process")
def test_jax_run_without_tensorflow_resumes_exactly(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", _JAX_RESUME, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["resumed"] == got["whole"] and "test" in got["whole"]
    whole, cut = (
        [{k: v for k, v in row.items() if "time" not in k} for row in csv.DictReader(lines)] for lines in got["curves"]
    )
    assert len(whole) == 4 and cut == whole, (cut, whole)
