"""Helpers shared by the rotation, cell, layer and baseline tests: backend-neutral
gradients, finite differences, weight access and a noise probe cell.

A plain module (pytest's `pythonpath` puts tests/ on sys.path): conftest.py keeps
only fixtures and hooks.
"""

import keras
import numpy as np
from keras import ops

from rum_tf.cells import NoisyCell


def backend():
    return keras.backend.backend()


def gradients(fn, *args):
    """d sum(fn(*args)) / d args, as NumPy arrays, on the TF or JAX backend."""
    args = [keras.ops.convert_to_tensor(np.asarray(a, np.float32)) for a in args]
    if backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for a in args:
                tape.watch(a)
            total = tf.reduce_sum(fn(*args))
        return [np.asarray(g) for g in tape.gradient(total, args)]
    if backend() == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(lambda *xs: jnp.sum(fn(*xs)), argnums=tuple(range(len(args))))(*args)
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(backend())


def assert_config_round_trip(cell):
    """from_config and Keras (de)serialisation give back a cell with the same config."""
    clone = cell.__class__.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert type(restored) is type(cell) and restored.get_config() == cell.get_config()


def finite_differences(loss, *args, step=1e-6):
    """Central differences of the float64 scalar loss(*args) with respect to each arg."""
    args = [np.asarray(x, np.float64).copy() for x in args]
    grads = []
    for x in args:
        g = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            keep = x[index]
            x[index] = keep + step
            up = loss(*args)
            x[index] = keep - step
            down = loss(*args)
            x[index] = keep
            g[index] = (up - down) / (2 * step)
        grads.append(g)
    return grads


def weight_gradients(layer, loss, *args, **kwargs):
    """{variable name: d loss(layer(*args, **kwargs)) / d variable} for the layer's trainable weights."""
    variables = layer.trainable_variables
    if backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total = loss(layer(*args, **kwargs))
        grads = tape.gradient(total, variables)
    elif backend() == "jax":
        import jax

        fixed = [v.value for v in layer.non_trainable_variables]
        grads = jax.grad(lambda values: loss(layer.stateless_call(values, fixed, *args, **kwargs)[0]))(
            [v.value for v in variables]
        )
    else:
        raise NotImplementedError(backend())
    return {v.name: np.asarray(g, np.float64) for v, g in zip(variables, grads)}


class NoiseProbe(NoisyCell):
    """Outputs the noise it is given, to see what the layer feeds each step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = [3]
        self.output_size = 3

    @property
    def noise_size(self):
        return 3

    def call(self, inputs, states, training=False, noise=None):
        states, counter = self._take_step_counter(states)
        noise = self._noise_for_call(inputs, training, noise, counter)
        out = ops.zeros_like(states[0]) if noise is None else noise
        return out, [states[0]] + self._next_step_counter(counter)


def weights_of(layer):
    """{variable name: float64 array} of a built layer."""
    return {v.name: np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float64) for v in layer.weights}


def randomize(layer, rng, scale=0.5):
    """Give every weight random values, so tests do not rest on the initializers."""
    layer.set_weights([rng.normal(0, scale, w.shape).astype(np.float32) for w in layer.get_weights()])
