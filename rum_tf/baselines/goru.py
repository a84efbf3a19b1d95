"""The Gated Orthogonal Recurrent Unit (Jing et al. 2019, arXiv:1706.02761)."""

import math

import keras
from keras import ops

from rum_tf.baselines.eunn import EUNNTransitionCell
from rum_tf.baselines.modrelu import modrelu
from rum_tf.cells import blockwise_initializer, clone_initializer

_PACKAGE = "rum_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GORUCell(EUNNTransitionCell):
    """GORU cell: a GRU whose candidate uses an orthogonal EUNN transition.

        [x_c, x_r, x_g] = x W
        r = sigmoid(x_r + h W_r + b_r)          (reset gate)
        g = sigmoid(x_g + h W_g + b_g)          (update gate)
        c = modReLU(r * (U h) + x_c, b_c)
        h' = g * h + (1 - g) * c

    U is the real EUNN transition (see `rum_tf.baselines.eunn`); the official
    GORU has no complex variant. Defaults are those of the official code.

    Args:
      units: N, the size of the hidden state.
      capacity: layers of the tunable style (2).
      fft: FFT style, ⌈log2 N⌉ layers (False).
      input_kernel_initializer: W [d, 3N] (candidate, reset, update columns),
        uniform in [-0.01, 0.01].
      recurrent_kernel_initializer: each N-column block of [W_r, W_g] [N, 2N],
        uniform in [-0.01, 0.01].
      reset_bias_initializer: b_r, constant 2.0.
      update_bias_initializer: b_g; the official code gives none, so TF1's
        default applied: glorot_uniform (limit sqrt(3 / N) for a vector).
      modrelu_bias_initializer: b_c, constant 2.0.
      angle_initializer: θ, uniform in [-π, π].
      **kwargs: base layer arguments (name, dtype, ...).

    The state and the output are h [B, N]. As for `EUNNCell`, `call` takes the
    `transition_matrix` that `rum_tf.Recurrent` builds once per sequence.
    """

    def __init__(
        self,
        units,
        capacity=2,
        fft=False,
        input_kernel_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
        recurrent_kernel_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
        reset_bias_initializer=keras.initializers.Constant(2.0),
        update_bias_initializer="glorot_uniform",
        modrelu_bias_initializer=keras.initializers.Constant(2.0),
        angle_initializer=keras.initializers.RandomUniform(-math.pi, math.pi),
        **kwargs,
    ):
        super().__init__(units, capacity, fft, False, angle_initializer, **kwargs)
        self.input_kernel_initializer = keras.initializers.get(input_kernel_initializer)
        self.recurrent_kernel_initializer = keras.initializers.get(recurrent_kernel_initializer)
        self.reset_bias_initializer = keras.initializers.get(reset_bias_initializer)
        self.update_bias_initializer = keras.initializers.get(update_bias_initializer)
        self.modrelu_bias_initializer = keras.initializers.get(modrelu_bias_initializer)
        self.state_size = [units]
        self.output_size = units

    def build(self, input_shape):
        n = self.units

        def weight(name, shape, initializer):
            return self.add_weight(shape=shape, initializer=clone_initializer(initializer, 0), name=name)

        self.input_kernel = weight("input_kernel", (input_shape[-1], 3 * n), self.input_kernel_initializer)
        # W_r and W_g are two variables in the official code: one draw each.
        blockwise = blockwise_initializer(self.recurrent_kernel_initializer, [n, n], axis=1)
        self.recurrent_kernel = self.add_weight(shape=(n, 2 * n), initializer=blockwise, name="recurrent_kernel")
        self.reset_bias = weight("reset_bias", (n,), self.reset_bias_initializer)
        self.update_bias = weight("update_bias", (n,), self.update_bias_initializer)
        self.modrelu_bias = weight("modrelu_bias", (n,), self.modrelu_bias_initializer)
        self._build_transition()

    def call(self, inputs, states, training=False, transition_matrix=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x_c, x_r, x_g = ops.split(ops.matmul(inputs, self.input_kernel), 3, axis=-1)
        h_r, h_g = ops.split(ops.matmul(h, self.recurrent_kernel), 2, axis=-1)
        reset = ops.sigmoid(x_r + h_r + self.reset_bias)
        update = ops.sigmoid(x_g + h_g + self.update_bias)
        candidate = modrelu(reset * self.transition(h, matrix=transition_matrix) + x_c, self.modrelu_bias)
        # g h + (1 - g) c, written with one product fewer.
        new_h = candidate + update * (h - candidate)
        return new_h, [new_h]

    def get_config(self):
        config = super().get_config()
        config.update(
            input_kernel_initializer=keras.initializers.serialize(self.input_kernel_initializer),
            recurrent_kernel_initializer=keras.initializers.serialize(self.recurrent_kernel_initializer),
            reset_bias_initializer=keras.initializers.serialize(self.reset_bias_initializer),
            update_bias_initializer=keras.initializers.serialize(self.update_bias_initializer),
            modrelu_bias_initializer=keras.initializers.serialize(self.modrelu_bias_initializer),
        )
        return config
