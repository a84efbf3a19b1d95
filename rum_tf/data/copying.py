"""Copying memory task (Arjovsky et al. layout, SPEC §4).

Inputs are token ids in 0..9: 10 symbols drawn uniformly from 1..8, T-1 blanks (0), the
marker 9, then 10 blanks; length T+20. Targets are T+10 blanks followed by the 10 symbols,
so they take 9 values (0..8). The model one-hot encodes the inputs (depth 10).
"""

import itertools
import math

import numpy as np

NUM_SYMBOLS = 10  # symbols to remember
BLANK = 0
MARKER = 9
INPUT_DEPTH = 10  # one-hot size of the inputs: blank, 1..8, marker
NUM_CLASSES = 9  # output softmax: blank, 1..8

# Seed streams: training batch k uses [seed, _TRAIN, k], the held-out set [seed, _TEST],
# so no held-out sequence is drawn from the stream that training sees.
_TRAIN, _TEST = 0, 1


def _check(batch, T):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"copying delay T must be an integer >= 1, got {T!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"copying batch must be an integer >= 1, got {batch!r}")


def copying_batch(batch, T, rng):
    """One batch: (x, y), int32 arrays of shape [batch, T+20].

    ``rng`` is a ``numpy.random.Generator`` (or a seed for one).
    """
    _check(batch, T)
    rng = np.random.default_rng(rng)
    symbols = rng.integers(1, 9, size=(batch, NUM_SYMBOLS), dtype=np.int32)
    x = np.zeros((batch, T + 2 * NUM_SYMBOLS), np.int32)
    y = np.zeros_like(x)
    x[:, :NUM_SYMBOLS] = symbols
    x[:, NUM_SYMBOLS + T - 1] = MARKER
    y[:, -NUM_SYMBOLS:] = symbols
    return x, y


def memoryless_baseline(T):
    """Cross-entropy (nats per step) of the best model without memory: 10 ln 8 / (T+20).

    It predicts blank with certainty wherever the target is always blank and a uniform
    guess over 1..8 at the last 10 steps.
    """
    return NUM_SYMBOLS * math.log(8) / (T + 2 * NUM_SYMBOLS)


def one_hot(x, depth=INPUT_DEPTH, dtype=np.float32):
    """NumPy one-hot of integer ids: shape x.shape + (depth,)."""
    x = np.asarray(x)
    return (x[..., None] == np.arange(depth)).astype(dtype)


def copying_test_set(size, T, seed=0):
    """A fixed held-out set (x, y) of ``size`` sequences, disjoint in seed from training."""
    return copying_batch(size, T, np.random.default_rng([seed, _TEST]))


def copying_train_batch(batch, T, seed, step):
    """Training batch `step` of the stream of (batch, T, seed)."""
    return copying_batch(batch, T, np.random.default_rng([seed, _TRAIN, step]))


def copying_batches(batch, T, seed=0, start_step=0):
    """Endless iterator of fresh batches; batch k depends only on (seed, k).

    ``start_step`` lets a resumed run continue with the very batches it would have seen.
    """
    _check(batch, T)
    for step in itertools.count(start_step):
        yield copying_train_batch(batch, T, seed, step)


def copying_dataset(batch, T, seed=0, start_step=0):
    """The training stream of (x, y) int32 batches [batch, T+20], from batch ``start_step`` on.

    A prefetched ``tf.data.Dataset`` on the TensorFlow backend, else a
    ``keras.utils.PyDataset`` (``rum_tf.data.streams``, which needs no TensorFlow).
    """
    from rum_tf.data import streams  # here: the NumPy generators need neither Keras nor TF

    _check(batch, T)
    signature = None
    if streams.uses_tf_data():
        import tensorflow as tf

        spec = tf.TensorSpec((batch, T + 2 * NUM_SYMBOLS), tf.int32)  # a static batch, as the model's
        signature = (spec, spec)
    return streams.generated_batches(lambda k: copying_train_batch(batch, T, seed, k), start_step, signature)
