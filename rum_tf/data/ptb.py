"""Character-level Penn Treebank (SPEC §4).

The word-level files ``ptb.{train,valid,test}.txt`` are read as raw bytes; the vocabulary
is the sorted set of bytes of the full training file (50 symbols), so ids do not depend on
``max_chars``. Batching follows truncated BPTT with the state carried across batches: the
stream is cut into ``batch`` rows (the remainder dropped) and read in consecutive windows of
``num_steps``, targets shifted by one, so row i of batch k+1 continues row i of batch k.
"""

import collections
import math

import numpy as np

from rum_tf.data import files

PTBData = collections.namedtuple("PTBData", ["train", "valid", "test", "vocab"])
PTBData.__doc__ = "int32 id streams per split, and the vocabulary as sorted bytes."


def read_bytes(split, data_dir=None, download=None):
    """The raw bytes of ``ptb.<split>.txt``, found (or fetched) and verified by ``files``."""
    return files.ptb_file(split, data_dir, download).read_bytes()


def build_vocab(train_bytes):
    """The distinct bytes of the training text, sorted, as a ``bytes`` object (id = index)."""
    return bytes(sorted(set(train_bytes)))


def official_vocab(train_bytes):
    """The official reader's vocabulary: bytes by decreasing count in the training text,
    ties by byte value (id = index), as a ``bytes`` object."""
    counts = collections.Counter(train_bytes)
    return bytes(sorted(counts, key=lambda b: (-counts[b], b)))


def encode(data, vocab):
    """int32 ids of ``data`` (bytes); a byte outside ``vocab`` is a ValueError."""
    table = np.full(256, -1, np.int32)
    table[np.frombuffer(vocab, np.uint8)] = np.arange(len(vocab), dtype=np.int32)
    ids = table[np.frombuffer(data, np.uint8)]
    if ids.size and ids.min() < 0:
        bad = data[int(np.argmin(ids))]
        raise ValueError(f"byte {bytes([bad])!r} is not in the vocabulary")
    return ids


def decode(ids, vocab):
    """The bytes that ``ids`` stand for."""
    return np.frombuffer(vocab, np.uint8)[np.asarray(ids)].tobytes()


def load_ptb(data_dir=None, download=None, max_chars=None, max_eval_chars=None):
    """PTBData: id streams of the three splits and the 50-symbol vocabulary.

    ``max_chars`` keeps only that prefix of the training text, ``max_eval_chars`` of the
    validation and test texts (quick runs).
    """
    raw = {split: read_bytes(split, data_dir, download) for split in files.PTB_SPLITS}
    vocab = build_vocab(raw["train"])
    limit = {"train": max_chars, "valid": max_eval_chars, "test": max_eval_chars}
    ids = {split: encode(raw[split][: limit[split]], vocab) for split in raw}
    return PTBData(ids["train"], ids["valid"], ids["test"], vocab)


def _check(batch, num_steps):
    for name, value in (("batch size", batch), ("BPTT length", num_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def num_bptt_batches(length, batch, num_steps):
    """How many [batch, num_steps] windows a stream of ``length`` ids gives."""
    _check(batch, num_steps)
    return max(length // batch - 1, 0) // num_steps


def bptt_batches(ids, batch, num_steps):
    """(x, y), int32 arrays [K, batch, num_steps]; y is x shifted one step ahead."""
    k = num_bptt_batches(len(ids), batch, num_steps)
    if k == 0:
        raise ValueError(
            f"a stream of {len(ids)} ids is too short for batch {batch} x BPTT length "
            f"{num_steps} (it needs at least {batch * (num_steps + 1)})"
        )
    rows = np.asarray(ids, np.int32)[: batch * (len(ids) // batch)].reshape(batch, -1)
    span = k * num_steps

    def windows(a):
        return np.ascontiguousarray(a.reshape(batch, k, num_steps).swapaxes(0, 1))

    return windows(rows[:, :span]), windows(rows[:, 1 : span + 1])


def bptt_dataset(ids, batch, num_steps):
    """One epoch as a ``tf.data.Dataset`` of (x, y) [batch, num_steps], in stream order."""
    import tensorflow as tf  # Imported here so the NumPy helpers do not need TF.

    return tf.data.Dataset.from_tensor_slices(bptt_batches(ids, batch, num_steps))


def bpc(mean_nats):
    """Bits per character of a mean cross-entropy in nats."""
    return mean_nats / math.log(2)


def unigram_entropy(ids, vocab_size):
    """Entropy in bits of the character frequencies of `ids`: the BPC of the best model
    that ignores context, on that text."""
    p = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def unigram_cross_entropy(train_ids, ids, vocab_size):
    """BPC on `ids` of the training text's character frequencies (add-one smoothed, so a
    character absent from a short training prefix costs finite bits)."""
    p = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    q = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    return float(-(q / q.sum() * np.log2(p / p.sum())).sum())
