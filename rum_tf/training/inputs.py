"""tf.data pipelines whose training batch k is a function of k alone.

That is what makes a resumed run exact: after restoring step k the harness asks the
task for the stream starting at k and gets the very batches an uninterrupted run saw.
tf.data feeds every Keras backend (JAX included).
"""

import numpy as np
import tensorflow as tf


def generated_batches(batch_fn, start_step, output_signature=None):
    """Endless dataset of `batch_fn(k)` for k = start_step, start_step + 1, ...

    `batch_fn(k)` returns a tuple of NumPy arrays matching `output_signature`; unset, it is
    read from `batch_fn(start_step)` with a free batch dimension.
    """
    if output_signature is None:
        output_signature = tuple(tf.TensorSpec((None,) + np.shape(a)[1:], tf.as_dtype(np.asarray(a).dtype))
                                 for a in batch_fn(start_step))

    def generate():
        step = start_step
        while True:
            yield batch_fn(step)
            step += 1

    dataset = tf.data.Dataset.from_generator(generate, output_signature=output_signature)
    return dataset.prefetch(tf.data.AUTOTUNE)


def cyclic_batches(arrays, batch_size, start_step=0):
    """Endless dataset cycling through fixed arrays in order, `batch_size` rows at a time.

    Batch k holds rows k*B .. k*B+B-1 modulo the number of rows (wrapping into the next
    pass), the official recall script's `next_batch`.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    size = len(arrays[0])
    dataset = tf.data.Dataset.from_tensor_slices(arrays).repeat()
    dataset = dataset.skip((start_step * batch_size) % size)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def fixed_batches(arrays, batch_size):
    """One pass over fixed arrays (evaluation), the last batch possibly smaller."""
    dataset = tf.data.Dataset.from_tensor_slices(tuple(np.asarray(a) for a in arrays))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
