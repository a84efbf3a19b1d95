"""Truncated BPTT with the state carried across batches, for `model.fit` on any Keras backend.

What a language-model task needs beyond `loop.Task`:

- `SequenceLoss`: the official PTB cost, cross-entropy summed over the window and
  averaged over the batch (= num_steps x the mean per character). Adam hardly sees the
  scale, but the global-norm clip (1.0) acts on these gradients, so the scale is kept.
- `bpc`: bits per character, the metric (mean cross-entropy / ln 2).
- `CarryState`: wraps a recurrent layer so that the final state of batch k is the initial
  state of batch k+1 (no gradient flows across the boundary), on every Keras backend.
- `StateResetter`: the carried states restart from their initial state at the start of
  every training epoch and of every evaluation (the official `run_epoch` feeds the zero
  state first, then carries the final state of batch k into batch k+1).
- `CharsPerSecond`: training characters per second of each epoch, into the logs.
- `lr_drop_schedule`: the learning rate times `factor` from a given epoch on.
- `evaluate_at_batch`: the test with a second model of another batch size (the official
  code tests at batch 20 with the trained weights).

Why not `keras.layers.RNN(stateful=True)`: in Keras 3.15 its state variables are not part
of the model's state, so under JAX (whose jitted steps are stateless) the state is never
carried: every batch starts from zero. `CarryState` keeps the state in non-trainable
weights, which every backend's train and test steps update. They travel in checkpoints:
a run resumed at an epoch boundary resets them anyway, one resumed inside an epoch
(`RunConfig.checkpoint_every`) continues from the checkpoint's state.
"""

import math
import time

import keras
import numpy as np

from rum_tf.data import streams

_PACKAGE = "rum_tf"
_LN2 = math.log(2.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SequenceLoss(keras.losses.Loss):
    """Cross-entropy of logits [batch, steps, classes], summed over steps, mean over batch.

    The official PTB cost: `sum(cross-entropy) / batch_size`. Reported as the mean over
    the batches of an epoch, like every Keras loss.
    """

    def __init__(self, num_steps, name="sequence_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_steps = int(num_steps)

    def call(self, y_true, y_pred):
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        return ce * float(self.num_steps)  # Keras then averages over batch and steps

    def get_config(self):
        return {**super().get_config(), "num_steps": self.num_steps}


@keras.saving.register_keras_serializable(package=_PACKAGE)
def bits_per_character(y_true, y_pred):
    """Per-character cross-entropy of logits, in bits."""
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True) / _LN2


def bpc_metric(name="bpc"):
    """Mean bits per character over an epoch or an evaluation."""
    return keras.metrics.MeanMetricWrapper(bits_per_character, name=name)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CarryState(keras.layers.Layer):
    """A recurrent layer whose final state becomes the initial state of the next call.

    Args:
      layer: a `keras.layers.RNN` (e.g. `rum_tf.RUM`, `rum_tf.Recurrent`, Keras LSTM)
        built with `return_sequences=True, return_state=True, stateful=False`.
      **kwargs: base layer arguments (name, ...).

    Called on [batch, time, features] with a static batch size; returns the layer's
    output sequence. The state lives in non-trainable weights (`states`) of shape
    [batch, ...], starting from the layer's `get_initial_state` (zeros; the λ=1 RUM
    memory travels as M - I, so zeros are M = I), to which `reset_state()` returns it. Gradients stop at the
    window boundary (truncated BPTT).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.layers.deserialize(layer)
        if not (getattr(layer, "return_sequences", False) and getattr(layer, "return_state", False)):
            raise ValueError("CarryState needs a recurrent layer with return_sequences=True and return_state=True")
        if getattr(layer, "stateful", False):
            raise ValueError("CarryState carries the state itself: give it a layer with stateful=False")
        self.layer = layer
        self.states = None
        self.batch_size = None

    def build(self, input_shape):
        batch_size = input_shape[0]
        if batch_size is None:
            raise ValueError(f"CarryState needs a static batch size, got input shape {input_shape}")
        if not self.layer.built:
            self.layer.build(input_shape)
        self.batch_size = int(batch_size)
        initial = [keras.ops.convert_to_numpy(v) for v in self._initial_state()]
        self.states = [
            self.add_weight(
                shape=value.shape, initializer=keras.initializers.Constant(value), trainable=False, name=f"state_{i}"
            )
            for i, value in enumerate(initial)
        ]

    def _initial_state(self):
        state = self.layer.get_initial_state(self.batch_size)
        return list(state) if isinstance(state, (list, tuple)) else [state]

    def call(self, inputs, training=None):
        initial = [keras.ops.convert_to_tensor(v) for v in self.states]
        outputs = self.layer(inputs, initial_state=initial, training=training)
        sequence, final = outputs[0], outputs[1:]
        for variable, value in zip(self.states, final):
            variable.assign(keras.ops.stop_gradient(keras.ops.cast(value, variable.dtype)))
        return sequence

    def compute_output_shape(self, input_shape):
        shapes = self.layer.compute_output_shape(input_shape)
        return tuple(shapes[0])

    def reset_state(self):
        if self.states is not None:
            for variable, value in zip(self.states, self._initial_state()):
                variable.assign(value)

    def get_config(self):
        return {**super().get_config(), "layer": keras.layers.serialize(self.layer)}


def stateful_layers(model):
    """The layers of `model` that carry a state across batches, in order."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, CarryState) or (isinstance(layer, keras.layers.RNN) and layer.stateful)
    ]


def reset_states(model):
    """Every carried state back to its initial state (zeros; the λ=1 memory M - I = 0 is M = I)."""
    for layer in stateful_layers(model):
        layer.reset_state()


class StateResetter(keras.callbacks.Callback):
    """Resets the stateful layers at the start of each epoch and of each evaluation."""

    def on_epoch_begin(self, epoch, logs=None):
        reset_states(self.model)

    def on_test_begin(self, logs=None):
        reset_states(self.model)


class CharsPerSecond(keras.callbacks.Callback):
    """Adds `chars_per_s` (training characters per second of this epoch) to the epoch logs.

    Timed from the epoch's first batch to its last, evaluation excluded; the batches are
    counted, so an epoch resumed in its middle (`--checkpoint_every`) reports its own rate.
    """

    def __init__(self, chars_per_step):
        super().__init__()
        self.chars_per_step = int(chars_per_step)
        self._start = None
        self._elapsed = None
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._elapsed, self._steps = time.monotonic(), None, 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def _stop(self):
        if self._start is not None and self._elapsed is None:
            self._elapsed = time.monotonic() - self._start

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        if logs is not None and self._elapsed:
            logs["chars_per_s"] = self._steps * self.chars_per_step / self._elapsed


def lr_drop_schedule(base_lr, drop_epoch, factor=0.1):
    """`keras.callbacks.LearningRateScheduler` giving `base_lr`, then `base_lr * factor`
    from epoch `drop_epoch` (0-based) on. None or 0 for `drop_epoch`: never."""

    def schedule(epoch, lr=None):
        return float(base_lr * (factor if drop_epoch and epoch >= drop_epoch else 1.0))

    return keras.callbacks.LearningRateScheduler(schedule)


def _state_ids(model):
    return {id(v) for layer in stateful_layers(model) if isinstance(layer, CarryState) for v in layer.states or ()}


def copy_weights(source, target):
    """Copy the weights of `source` into `target`, a model built by the same function.

    Matched by order, carried states left out: two models of different batch sizes
    share their weights this way.
    """
    src = [w for w in source.weights if id(w) not in _state_ids(source)]
    dst = [w for w in target.weights if id(w) not in _state_ids(target)]
    if [tuple(w.shape) for w in src] != [tuple(w.shape) for w in dst]:
        raise ValueError("the two models do not have the same weights")
    for s, d in zip(src, dst):
        # Through NumPy: under JAX an array shared by two models' variables would be freed
        # when one model's jitted step donates its buffers.
        d.assign(np.array(keras.ops.convert_to_numpy(s)))


def evaluate_at_batch(model, build_model, x, y, loss, metrics, jit_compile=False):
    """Evaluate `model`'s weights with a second model `build_model()` on windows (x, y).

    The second model (e.g. stateful at another batch size) gets the weights, starts from
    its initial state and carries it across the windows. Returns {metric: value}.
    """
    twin = build_model()
    twin.compile(loss=loss, metrics=list(metrics), jit_compile=jit_compile)
    copy_weights(model, twin)
    reset_states(twin)
    result = twin.evaluate(streams.windows_dataset(x, y), return_dict=True, verbose=0)
    reset_states(twin)
    return {k: float(v) for k, v in result.items()}
