"""Associative recall task (SPEC §4).

A sequence lists T/2 key-value pairs: the keys are a random permutation of 1..T/2 and
each is followed by a value drawn from T/2+1..T/2+10. Then come two 0 tokens and a query,
one of the keys; length T+3. The vocabulary has T/2+11 tokens (0 included). The answer is
the query's value, as a class in 0..9 (value - (T/2+1)).
"""

import collections

import numpy as np

NUM_VALUES = 10
Split = collections.namedtuple("Split", ["x", "y"])
RecallData = collections.namedtuple("RecallData", ["train", "valid", "test"])

# Each split has its own seed stream, so changing one split's size leaves the others as
# they were.
_STREAMS = {"train": 0, "valid": 1, "test": 2}


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2 or T % 2:
        raise ValueError(f"associative recall length T must be an even integer >= 2, got {T!r}")


def vocab_size(T):
    """Number of input tokens: 0, the T/2 keys and the 10 values."""
    _check_T(T)
    return T // 2 + NUM_VALUES + 1


def recall_batch(n, T, rng):
    """``n`` sequences: x int32 [n, T+3] and y int32 [n] in 0..9."""
    _check_T(T)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of sequences must be an integer >= 0, got {n!r}")
    rng = np.random.default_rng(rng)
    half = T // 2
    # argsort of i.i.d. uniforms gives one uniform permutation per row, vectorised.
    keys = np.argsort(rng.random((n, half)), axis=1).astype(np.int32) + 1
    classes = rng.integers(0, NUM_VALUES, size=(n, half), dtype=np.int32)
    query = rng.integers(0, half, size=n)
    rows = np.arange(n)
    x = np.zeros((n, T + 3), np.int32)
    x[:, 0:T:2] = keys
    x[:, 1:T:2] = classes + half + 1
    x[:, -1] = keys[rows, query]
    return x, classes[rows, query]


def recall_data(T, train_size=100_000, valid_size=10_000, test_size=20_000, seed=0):
    """Fixed train/valid/test splits, each a ``Split(x, y)``, reproducible from ``seed``."""
    sizes = {"train": train_size, "valid": valid_size, "test": test_size}
    return RecallData(
        **{
            name: Split(*recall_batch(size, T, np.random.default_rng([seed, _STREAMS[name]])))
            for name, size in sizes.items()
        }
    )
