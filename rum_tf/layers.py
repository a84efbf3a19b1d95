"""Sequence layers: `Recurrent` (any rum_tf cell) and `RUM` (the fast RUM layer); the synthetic tasks'
`OneHot` front-end and their `output_layer` (initialised as the official scripts)."""

import math

import keras
from keras import ops

from rum_tf import cells as cells_lib
from rum_tf import reversible as reversible_lib
from rum_tf.compat import backend_rnn as _backend_rnn  # the loop Keras' own RNN layers use

_PACKAGE = "rum_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Recurrent(keras.layers.RNN):
    """`keras.layers.RNN` that draws the cells' training noise outside the loop.

    Zoneout and dropout masks of every time step are drawn in one call before
    the recurrence and scanned over with the inputs, so training noise is fresh
    at each step on every backend (a draw inside JAX's `lax.scan` would repeat).
    A cell with a `loop_constants()` method (the EUNN and GORU cells) gets what
    it returns, {call argument: tensor} computed once per sequence, as keyword
    arguments of every step's `call`.
    Takes the arguments of `keras.layers.RNN` (cell, return_sequences,
    return_state, go_backwards, stateful, unroll, zero_output_for_mask).
    """

    def __init__(self, cell, **kwargs):
        if isinstance(cell, cells_lib.NoisyCell):
            cell.take_noise_from_caller()  # so it carries no step counter
        if hasattr(cell, "loop_constants"):
            # The constants read the cell's variables outside its call, i.e. autocast to this
            # layer's compute dtype: under mixed precision the layer computes in float32, as the
            # cell does (SPEC §6), or the angles would be rounded to float16.
            kwargs["dtype"] = cells_lib._float32_if_mixed(kwargs.get("dtype"))
        super().__init__(cell, **kwargs)

    def _step_inputs(self, sequences):
        """What the loop scans over besides the noise; `RUM` may project the inputs here."""
        return sequences

    def _make_step(self, training):
        """fn(step_inputs, states, noise) -> (output, new_states) for one time step."""
        kwargs = {"training": training}
        if hasattr(self.cell, "loop_constants"):
            kwargs.update(self.cell.loop_constants())  # outside the loop: once per sequence
        if isinstance(self.cell, cells_lib.NoisyCell):
            return lambda x, states, noise: self.cell(x, states, noise=noise, **kwargs)
        return lambda x, states, noise: self.cell(x, states, **kwargs)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        noise = None
        if training and getattr(self.cell, "noise_size", 0):
            noise = self.cell.draw_noise(tuple(ops.shape(sequences)[:2]))
        step_inputs = self._step_inputs(sequences)
        cell_step = self._make_step(training)

        def step(inputs, states):
            if noise is not None:
                inputs, step_noise = inputs
            else:
                step_noise = None
            output, new_states = cell_step(inputs, list(states), step_noise)
            if not isinstance(new_states, (list, tuple)):
                new_states = [new_states]
            return output, list(new_states)

        return _backend_rnn(
            step,
            (step_inputs, noise) if noise is not None else step_inputs,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RUM(Recurrent):
    """Rotational Unit of Memory layer, used like `keras.layers.GRU`.

    Builds a `RUMCell` and runs it over the sequence with a fast path: the
    weights a step needs are sliced and concatenated once, outside the loop;
    the input projections (the x part of the gates and the embedding) are one
    matmul, either for all time steps at once before the loop or per step (see
    `input_projection`); the zoneout noise of all steps is drawn at once; and
    the rotation has a hand-written gradient (`rotation.rotate_with_cos`). The
    outputs equal `keras.layers.RNN(RUMCell(...))`.

    Args:
      units, lambda_, eta, activation, use_layer_norm, zoneout_keep_h,
      update_gate, trainable_rot, track_angle, use_embedding_bias, eps,
      gate_kernel_initializer, gate_bias_initializer,
      embedding_kernel_initializer, embedding_bias_initializer, dropout,
      recurrent_dropout, kernel_regularizer, recurrent_regularizer,
      bias_regularizer, kernel_constraint, recurrent_constraint,
      bias_constraint, seed:
        as in `RUMCell` (the Keras GRU arguments of the same names; the
        `RUMCell` docstring says which weight each one touches).
      reversible: (λ=1) differentiate the recurrence with the reversible
        backward pass of `rum_tf.reversible` (default True): training memory
        O(B N^2 + T B N) instead of T B N^2, same values and gradients. False
        differentiates the loop automatically (kept for comparison). Training
        with `recurrent_dropout` also takes the automatic path.
      input_projection: "sequence" projects the inputs of all time steps in one
        matmul before the loop; "step" projects each step's input inside the
        loop; "auto" (default) picks "step" on CPU, where it measured faster
        under both TensorFlow and JAX (scanning over the wide projected
        sequence costs more than the small per-step matmul), and "sequence" on
        a GPU or TPU. The choice changes speed only, not the outputs.
      return_sequences: return the whole output sequence, not only the last.
      return_state: also return the final state(s).
      go_backwards: process the sequence backwards.
      stateful: carry the last state of batch i into batch i + 1.
      unroll: unroll the loop (short sequences only).
      zero_output_for_mask: masked steps output zeros instead of the last output.
      **kwargs: base layer arguments (name, dtype, ...).
    """

    # RUMCell's arguments named as Keras GRU's (no official counterpart; the task binaries have no
    # flags for them).
    KERAS_GRU_ARGS = (
        "dropout",
        "recurrent_dropout",
        "kernel_regularizer",
        "recurrent_regularizer",
        "bias_regularizer",
        "kernel_constraint",
        "recurrent_constraint",
        "bias_constraint",
    )

    # The RUMCell arguments the layer takes and hands to its cell.
    CELL_ARGS = (
        "lambda_",
        "eta",
        "activation",
        "use_layer_norm",
        "zoneout_keep_h",
        "update_gate",
        "trainable_rot",
        "track_angle",
        "use_embedding_bias",
        "eps",
        "gate_kernel_initializer",
        "gate_bias_initializer",
        "embedding_kernel_initializer",
        "embedding_bias_initializer",
        "seed",
    ) + KERAS_GRU_ARGS

    INPUT_PROJECTIONS = ("auto", "sequence", "step")

    def __init__(
        self,
        units,
        reversible=True,
        input_projection="auto",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        if input_projection not in self.INPUT_PROJECTIONS:
            raise ValueError(f"input_projection must be one of {self.INPUT_PROJECTIONS}, got {input_projection!r}.")
        self.input_projection = input_projection
        self.reversible = bool(reversible)
        self._recurrent_mask = None  # set per call by inner_loop
        cell_kwargs = {k: kwargs.pop(k) for k in self.CELL_ARGS if k in kwargs}
        dtype = kwargs.get("dtype")
        cell = cells_lib.RUMCell(units, dtype=dtype, name="rum_cell", **cell_kwargs)
        kwargs["dtype"] = cells_lib._float32_if_mixed(dtype)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )

    def _projects_sequence(self):
        if self.input_projection != "auto":
            return self.input_projection == "sequence"
        return _accelerator_visible()

    def _step_inputs(self, sequences):
        if self._projects_sequence():
            return self.cell.project_inputs(sequences, self.cell.input_weights())
        return sequences

    def _make_step(self, training):
        cell = self.cell
        recurrent_kernel = cell.gate_kernel[cell.input_dim :]  # sliced once, not per step
        recurrent_mask = self._recurrent_mask
        if self._projects_sequence():
            return lambda projected, states, noise: cell.recurrent_step(
                projected, states, noise, recurrent_kernel, recurrent_mask
            )
        weights = cell.input_weights()  # built once, outside the loop
        return lambda x, states, noise: cell.recurrent_step(
            cell.project_inputs(x, weights), states, noise, recurrent_kernel, recurrent_mask
        )

    def _runs_reversible(self):
        # The reversible step takes no recurrent dropout mask: that rare case differentiates automatically.
        return (
            self.reversible
            and self.cell.lambda_ == 1
            and not self.unroll
            and self._recurrent_mask is None
            and reversible_lib.supported()
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not hasattr(sequences, "ndim"):  # a tf.Variable (Keras' RNN passes it on): its value
            sequences = ops.copy(sequences)
        states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
        # The dropout masks are one per sequence: the input mask is applied to the whole sequence here.
        input_mask, self._recurrent_mask = self.cell.dropout_masks(sequences[:, 0], states[0], training)
        if input_mask is not None:
            sequences = sequences * ops.expand_dims(input_mask, 1)
        if not self._runs_reversible():
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        projects_sequence = self._projects_sequence()
        xs = list(self._step_inputs(sequences)) if projects_sequence else [sequences]
        consts = []
        if training and cell.noise_size:
            consts = [cell.draw_noise(tuple(ops.shape(sequences)[:2]))]
        if mask is not None:
            mask = ops.expand_dims(ops.cast(mask, sequences.dtype), -1)
        time_major = [ops.swapaxes(x, 0, 1) for x in xs + consts + ([mask] if mask is not None else [])]
        if self.go_backwards:
            time_major = [ops.flip(x, 0) for x in time_major]
        xs, consts = time_major[: len(xs)], time_major[len(xs) : len(xs) + len(consts)]
        mask = time_major[-1] if mask is not None else None

        # Weights enter as tensors: the step reads the cell's variables through
        # a StatelessScope that maps them to `values`, so the custom gradient
        # sees no variable and returns a gradient for each of them.
        variables = list(cell.weights)
        prepared = [cell.gate_kernel[cell.input_dim :]]
        if not projects_sequence:
            prepared += list(cell.input_weights())
        weights = prepared + [ops.copy(v) for v in variables]  # read as tensors

        def step(weights, x, c, h, d):
            recurrent_kernel, weights = weights[0], weights[1:]
            if not projects_sequence:
                input_weights, weights = weights[:2], weights[2:]
            with keras.StatelessScope(state_mapping=list(zip(variables, weights))):
                projected = x if projects_sequence else cell.project_inputs(x[0], input_weights)
                out, (h, d), factors = cell.recurrent_step(
                    projected, [h, d], c[0] if c else None, recurrent_kernel, return_memory_factors=True
                )
            return out, h, d, factors

        outputs, h, d = reversible_lib.run(
            step,
            xs,
            initial_state[0],
            initial_state[1],
            weights,
            cell.output_size,
            consts=consts,
            mask=mask,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        last_output = outputs[-1]
        outputs = ops.swapaxes(outputs, 0, 1) if self.return_sequences else ops.expand_dims(last_output, 1)
        return last_output, outputs, [h, d]

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        config["units"] = self.cell.units
        config["reversible"] = self.reversible
        config["input_projection"] = self.input_projection
        config.update({k: cell_config[k] for k in self.CELL_ARGS})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _accelerator_visible():
    """Whether Keras' backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


def _cell_property(name):
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


for _name in RUM.CELL_ARGS + ("units", "gate_kernel", "gate_bias", "embedding_kernel", "embedding_bias"):
    if _name != "seed":
        setattr(RUM, _name, _cell_property(_name))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OneHot(keras.layers.Layer):
    """Integer ids [..] -> float one-hot [.., depth]: the synthetic tasks' input front-end."""

    def __init__(self, depth, **kwargs):
        super().__init__(**kwargs)
        self.depth = int(depth)

    def call(self, inputs):
        return ops.one_hot(ops.cast(inputs, "int32"), self.depth, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.depth,)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


def output_layer(classes, input_depth, *, seed=None, name="output"):
    """Dense(classes) logits layer initialised as the official synthetic-task scripts.

    Weights uniform in ±sqrt(6 / (input_depth + classes)), bias 0.01. The official
    scripts take `input_depth` to be the size of the one-hot *input* vocabulary
    (n_input), not the hidden size; that is kept here.
    """
    limit = math.sqrt(6.0 / (input_depth + classes))
    return keras.layers.Dense(
        classes,
        kernel_initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed),
        bias_initializer=keras.initializers.Constant(0.01),
        name=name,
    )
