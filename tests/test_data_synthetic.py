"""Copying memory and associative recall generators (SPEC §4)."""

import math

import numpy as np
import pytest

from rum_tf.data import copying, recall

# ---------------------------------------------------------------------------- copying


@pytest.mark.parametrize("T", [1, 5, 30])
def test_copying_layout(T):
    x, y = copying.copying_batch(64, T, np.random.default_rng(0))
    assert x.shape == y.shape == (64, T + 20)
    assert x.dtype == y.dtype == np.int32
    symbols = x[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert (x[:, 10 : T + 9] == 0).all()  # T-1 blanks
    assert (x[:, T + 9] == 9).all()  # the marker
    assert (x[:, T + 10 :] == 0).all()  # 10 blanks while the answer is due
    assert (y[:, : T + 10] == 0).all()
    np.testing.assert_array_equal(y[:, T + 10 :], symbols)


def test_copying_symbols_cover_1_to_8():
    x, _ = copying.copying_batch(500, 3, 1)
    assert set(np.unique(x[:, :10])) == set(range(1, 9))


def test_copying_seeded():
    a = copying.copying_batch(8, 20, np.random.default_rng(7))
    b = copying.copying_batch(8, 20, np.random.default_rng(7))
    c = copying.copying_batch(8, 20, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("batch, T", [(0, 10), (4, 0), (4, -3), (4, 2.5)])
def test_copying_rejects_bad_arguments(batch, T):
    with pytest.raises(ValueError):
        copying.copying_batch(batch, T, 0)


def test_memoryless_baseline_values():
    assert copying.memoryless_baseline(200) == pytest.approx(10 * math.log(8) / 220)
    assert round(copying.memoryless_baseline(200), 4) == 0.0945
    assert round(copying.memoryless_baseline(500), 4) == 0.0400


def test_memoryless_baseline_matches_best_memoryless_predictor():
    # The best predictor without memory outputs, at each position, the marginal distribution
    # of the target there. Estimate it on one sample and score it on another.
    T, n = 30, 20_000
    _, fit = copying.copying_batch(n, T, np.random.default_rng(1))
    _, score = copying.copying_batch(n, T, np.random.default_rng(2))
    counts = np.stack([(fit == c).sum(0) for c in range(copying.NUM_CLASSES)], axis=-1)
    probs = (counts + 1e-9) / (counts.sum(-1, keepdims=True) + 1e-9 * copying.NUM_CLASSES)
    nll = -np.log(np.take_along_axis(probs[None], score[..., None], -1))
    assert nll.mean() == pytest.approx(copying.memoryless_baseline(T), rel=0.01)


def test_one_hot():
    x = np.array([[0, 9, 3]])
    h = copying.one_hot(x)
    assert h.shape == (1, 3, 10) and h.dtype == np.float32
    np.testing.assert_array_equal(h.argmax(-1), x)
    np.testing.assert_array_equal(h.sum(-1), 1)


def test_copying_stream_reproducible_and_resumable():
    first = [b for _, b in zip(range(3), copying.copying_batches(4, 10, seed=3))]
    again = [b for _, b in zip(range(3), copying.copying_batches(4, 10, seed=3))]
    resumed = next(copying.copying_batches(4, 10, seed=3, start_step=2))
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][0], first[1][0])  # fresh data every step
    np.testing.assert_array_equal(resumed[0], first[2][0])
    test_x, _ = copying.copying_test_set(4, 10, seed=3)
    assert not any(np.array_equal(test_x, x) for x, _ in first)


def test_copying_dataset():
    ds = copying.copying_dataset(4, 10, seed=3)
    got = [(x.numpy(), y.numpy()) for x, y in ds.take(2)]
    want = [b for _, b in zip(range(2), copying.copying_batches(4, 10, seed=3))]
    for (gx, gy), (wx, wy) in zip(got, want):
        assert gx.dtype == np.int32 and gx.shape == (4, 30)
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)


def test_copying_test_set_fixed():
    a = copying.copying_test_set(16, 12, seed=5)
    b = copying.copying_test_set(16, 12, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (16, 32)


# ---------------------------------------------------------------------------- recall


@pytest.mark.parametrize("T", [2, 10, 30, 50])
def test_recall_layout(T):
    n, half = 300, T // 2
    x, y = recall.recall_batch(n, T, np.random.default_rng(0))
    assert x.shape == (n, T + 3) and y.shape == (n,)
    assert x.dtype == y.dtype == np.int32
    keys, values = x[:, 0:T:2], x[:, 1:T:2]
    for row in keys:  # T/2 distinct keys: a permutation of 1..T/2
        assert sorted(row) == list(range(1, half + 1))
    assert values.min() >= half + 1 and values.max() <= half + 10
    assert (x[:, T : T + 2] == 0).all()
    assert x.max() < recall.vocab_size(T) == half + 11
    assert y.min() >= 0 and y.max() <= 9
    for row, answer in zip(x, y):
        query = row[-1]
        position = list(row[0:T:2]).index(query)  # the query is one of the keys
        assert row[2 * position + 1] - (half + 1) == answer


def test_recall_answers_and_queries_spread():
    x, y = recall.recall_batch(5000, 10, 0)
    assert set(np.unique(y)) == set(range(10))
    assert set(np.unique(x[:, -1])) == set(range(1, 6))


def test_recall_data_sizes_and_seeds():
    data = recall.recall_data(10, train_size=50, valid_size=20, test_size=30, seed=1)
    assert [len(s.y) for s in data] == [50, 20, 30]
    assert data.train.x.shape == (50, 13)
    again = recall.recall_data(10, train_size=50, valid_size=20, test_size=30, seed=1)
    other = recall.recall_data(10, train_size=50, valid_size=20, test_size=30, seed=2)
    np.testing.assert_array_equal(data.test.x, again.test.x)
    assert not np.array_equal(data.train.x, other.train.x)
    assert not np.array_equal(data.train.x[:20], data.valid.x)
    # A split does not depend on the sizes of the others.
    bigger = recall.recall_data(10, train_size=80, valid_size=20, test_size=30, seed=1)
    np.testing.assert_array_equal(bigger.valid.x, data.valid.x)


def test_recall_default_sizes():
    assert recall.recall_data.__defaults__ == (100_000, 10_000, 20_000, 0)


@pytest.mark.parametrize("T", [0, 1, 3, 31, -2, 4.0])
def test_recall_rejects_bad_T(T):
    with pytest.raises(ValueError, match="even integer >= 2"):
        recall.recall_batch(4, T, 0)
