"""Two numeric edge cases: the guards of the rotation hold in float16, and a tf.Variable is an input."""

import keras
import numpy as np
import pytest

import rum_tf
from rum_tf import rotation
from rum_tf.cells import RUMCell

tf = pytest.importorskip("tensorflow")


def _finite_gradients(fn, *arrays):
    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in tf.nest.flatten(fn(*tensors))])
    grads = tape.gradient(out, tensors)
    return all(g is None or np.isfinite(tf.cast(g, tf.float32).numpy()).all() for g in grads)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_rotation_guards_hold_in_every_dtype(dtype):
    """A zero row next to a nonzero one: the 1e-12 floor of |x|^2 is 0 in float16, unless raised."""
    rng = np.random.default_rng(0)
    a, b, h = (rng.normal(size=(2, 4)) for _ in range(3))
    a[0] = 0.0
    a, b, h = (x.astype(dtype) if dtype != "bfloat16" else tf.cast(x, tf.bfloat16).numpy() for x in (a, b, h))
    zeros = np.zeros((2, 4, 4), a.dtype)
    assert _finite_gradients(rotation.l2_normalize, a)
    assert _finite_gradients(rotation.rotate, a, b, h)
    assert _finite_gradients(lambda a, b, h: rotation.memory_step(tf.constant(zeros), a, b, h), a, b, h)


def test_mixed_precision_rnn_with_a_zero_row_has_finite_input_gradients():
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    x[0] = 0.0
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = keras.layers.RNN(RUMCell(4, lambda_=1))
        assert _finite_gradients(layer, x)
        assert _finite_gradients(rum_tf.RUM(4, lambda_=1), x)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("lambda_", [0, 1])
def test_a_tf_variable_is_an_input(lambda_):
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32)
    layer = rum_tf.RUM(4, lambda_=lambda_, return_sequences=True)
    np.testing.assert_array_equal(np.asarray(layer(tf.Variable(x))), np.asarray(layer(x)))
