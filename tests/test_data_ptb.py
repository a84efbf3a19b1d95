"""Character-level PTB: vocabulary, ids, truncated-BPTT batching, BPC."""

import math

import numpy as np
import pytest

from rum_tf.data import files, ptb


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))


def test_vocab_encode_decode():
    vocab = ptb.build_vocab(b"banana split\n")
    assert vocab == b"\n abilnpst"
    ids = ptb.encode(b"a plan\n", vocab)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [2, 1, 7, 5, 2, 6, 0])
    assert ptb.decode(ids, vocab) == b"a plan\n"
    with pytest.raises(ValueError, match="'z'"):
        ptb.encode(b"zap", vocab)


def _reference_layout(ids, batch, num_steps):
    """The BPTT layout written out with loops: row i is the i-th contiguous slice."""
    row_len = len(ids) // batch
    rows = [ids[i * row_len : (i + 1) * row_len] for i in range(batch)]
    xs, ys = [], []
    start = 0
    while start + num_steps + 1 <= row_len:
        xs.append([r[start : start + num_steps] for r in rows])
        ys.append([r[start + 1 : start + num_steps + 1] for r in rows])
        start += num_steps
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize(
    "n, batch, num_steps", [(1000, 4, 7), (1001, 3, 10), (64, 2, 31), (66, 2, 32), (500, 1, 1), (97, 5, 6)]
)
def test_bptt_layout_matches_reference(n, batch, num_steps):
    ids = np.random.default_rng(n).integers(0, 50, n).astype(np.int32)
    x, y = ptb.bptt_batches(ids, batch, num_steps)
    rx, ry = _reference_layout(list(ids), batch, num_steps)
    assert x.shape == rx.shape == (ptb.num_bptt_batches(n, batch, num_steps), batch, num_steps)
    np.testing.assert_array_equal(x, rx)
    np.testing.assert_array_equal(y, ry)


def test_bptt_rows_continue_across_batches():
    ids = np.arange(1000, dtype=np.int32)  # the id is the position in the stream
    x, y = ptb.bptt_batches(ids, 4, 10)
    np.testing.assert_array_equal(x[1][:, 0], x[0][:, -1] + 1)
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(x[0][:, 0], [0, 250, 500, 750])


@pytest.mark.parametrize("batch, num_steps", [(0, 10), (4, 0), (-1, 5), (4, -2)])
def test_bptt_rejects_bad_sizes(batch, num_steps):
    with pytest.raises(ValueError, match=">= 1"):
        ptb.bptt_batches(np.zeros(100, np.int32), batch, num_steps)


@pytest.mark.parametrize("n, batch, num_steps", [(10, 4, 3), (65, 2, 32)])
def test_bptt_too_short(n, batch, num_steps):
    # Each row needs num_steps + 1 ids: the targets run one step past the inputs.
    with pytest.raises(ValueError, match="too short"):
        ptb.bptt_batches(np.zeros(n, np.int32), batch, num_steps)


def test_bptt_dataset():
    ids = np.arange(200, dtype=np.int32)
    x, y = ptb.bptt_batches(ids, 2, 9)
    got = list(ptb.bptt_dataset(ids, 2, 9).as_numpy_iterator())
    assert len(got) == len(x)
    for k, (gx, gy) in enumerate(got):
        np.testing.assert_array_equal(gx, x[k])
        np.testing.assert_array_equal(gy, y[k])


def test_bpc_of_uniform_predictor():
    ids = np.random.default_rng(0).integers(0, 50, 10_000)
    log_probs = np.full((len(ids), 50), -math.log(50))  # log-softmax of equal logits
    mean_nats = -log_probs[np.arange(len(ids)), ids].mean()
    assert ptb.bpc(mean_nats) == pytest.approx(math.log2(50))


def test_real_vocab_has_50_symbols(data_dir):
    data = ptb.load_ptb(data_dir, max_chars=1000, max_eval_chars=500)
    assert data.vocab == b"\n #$&'*-./0123456789<>N\\abcdefghijklmnopqrstuvwxyz"
    assert len(data.vocab) == 50
    assert (len(data.train), len(data.valid), len(data.test)) == (1000, 500, 500)
    assert ptb.decode(data.train[:20], data.vocab) == ptb.read_bytes("train", data_dir)[:20]


def test_real_full_lengths(data_dir):
    data = ptb.load_ptb(data_dir)
    # File sizes from shared/data/SOURCES.md.
    assert (len(data.train), len(data.valid), len(data.test)) == (5101618, 399782, 449945)
    assert data.valid.max() < 50 and data.test.min() >= 0
    x, _ = ptb.bptt_batches(data.train, 128, 150)
    assert x.shape == (5101618 // 128 // 150, 128, 150) == (265, 128, 150)
