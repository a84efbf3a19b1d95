"""Input streams whose training batch k is a function of k alone.

That is what makes a resumed run exact: after restoring step k the harness asks the
task for the stream starting at k and gets the very batches an uninterrupted run saw.

On the TensorFlow backend they are tf.data pipelines (prefetched in TensorFlow's own
threads). On every other backend they are `Batches`, a `keras.utils.PyDataset` over
NumPy arrays, which every backend's `fit` and `evaluate` read and which needs no
TensorFlow: a JAX-only machine runs the same tasks. Both kinds yield the same batches
in the same order.
"""

import math

import keras
import numpy as np


def uses_tf_data():
    """Whether the pipelines are tf.data (the TensorFlow backend) or `Batches` (any other)."""
    return keras.backend.backend() == "tensorflow"


class Batches(keras.utils.PyDataset):
    """Item i is `batch_fn(start + i)`; `num_batches` items, or endless when it is None.

    A backend-neutral stream: Keras reads it in order in the training thread, and an
    endless one continues across the epochs of one `fit` (as a repeated tf.data
    stream does), so step s of a run reads `batch_fn(s)` whatever step it started at.
    """

    def __init__(self, batch_fn, num_batches=None, start=0):
        super().__init__()
        self.batch_fn = batch_fn
        self._num_batches = num_batches
        self.start = int(start)

    @property
    def num_batches(self):
        return self._num_batches

    def __getitem__(self, index):
        if self._num_batches is not None and not 0 <= index < self._num_batches:
            raise IndexError(f"batch {index} of {self._num_batches}")
        return tuple(self.batch_fn(self.start + index))


def _signature(batch):
    """tf.TensorSpecs of a batch of NumPy arrays, the batch dimension left free."""
    import tensorflow as tf

    return tuple(tf.TensorSpec((None,) + np.shape(a)[1:], tf.as_dtype(np.asarray(a).dtype)) for a in batch)


def generated_batches(batch_fn, start_step, output_signature=None):
    """Endless stream of `batch_fn(k)` for k = start_step, start_step + 1, ...

    `batch_fn(k)` returns a tuple of NumPy arrays. `output_signature` (tf.TensorSpecs,
    used on the TensorFlow backend only) defaults to that of `batch_fn(start_step)` with
    a free batch dimension.
    """
    if not uses_tf_data():
        return Batches(batch_fn, start=start_step)
    import tensorflow as tf

    if output_signature is None:
        output_signature = _signature(batch_fn(start_step))

    def generate():
        step = start_step
        while True:
            yield batch_fn(step)
            step += 1

    dataset = tf.data.Dataset.from_generator(generate, output_signature=output_signature)
    return dataset.prefetch(tf.data.AUTOTUNE)


def cyclic_batches(arrays, batch_size, start_step=0):
    """Endless stream cycling through fixed arrays in order, `batch_size` rows at a time.

    Batch k holds rows k*B .. k*B+B-1 modulo the number of rows (wrapping into the next
    pass), the official recall script's `next_batch`.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    size = len(arrays[0])
    if not uses_tf_data():
        offsets = np.arange(batch_size)
        return Batches(lambda k: tuple(a[(k * batch_size + offsets) % size] for a in arrays), start=start_step)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays).repeat()
    dataset = dataset.skip((start_step * batch_size) % size)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def fixed_batches(arrays, batch_size):
    """One pass over fixed arrays (evaluation), the last batch possibly smaller."""
    arrays = tuple(np.asarray(a) for a in arrays)
    if not uses_tf_data():
        return Batches(
            lambda i: tuple(a[i * batch_size : (i + 1) * batch_size] for a in arrays),
            num_batches=math.ceil(len(arrays[0]) / batch_size),
        )
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def epoch_stream(x, y, start_step=0):
    """Endless stream of the windows (x[k], y[k]), epoch after epoch (the PTB training stream).

    `x`, `y`: [K, batch, num_steps] (`rum_tf.data.ptb.bptt_batches`). Step s is window
    s mod K, so the stream started at any step is the one an uninterrupted run reads.
    """
    x, y = np.asarray(x), np.asarray(y)
    batches = len(x)
    if not uses_tf_data():
        return Batches(lambda s: (x[s % batches], y[s % batches]), start=start_step)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    return dataset.skip(start_step % batches).prefetch(2)


def windows_dataset(x, y):
    """One pass over the windows (validation / test), in stream order."""
    x, y = np.asarray(x), np.asarray(y)
    if not uses_tf_data():
        return Batches(lambda k: (x[k], y[k]), num_batches=len(x))
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).prefetch(2)
