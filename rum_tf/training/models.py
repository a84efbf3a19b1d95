"""Model registry: a name (`--model`) -> a recurrent layer, plus the shared front and heads.

A task builds its own model around `recurrent_layer(...)`: its input front-end
(`OneHot`, an embedding, ...), the recurrent core chosen by name, and its output head
(`output_layer`). Adding a model (EUNN, GORU, an FS-RNN, ...) is one registration:

    @models.register("goru", options=("capacity",))
    def _goru(units, *, seed, **layer_kwargs):
        return Recurrent(GORUCell(units, ...), **layer_kwargs)

`options` names the model arguments (`RUM_OPTIONS` for RUM) a builder accepts; asking
another model for them is an error, so a flag meant for RUM cannot silently do nothing.
This is the one place that says which option applies to which model (`takes`); the
registry holds every model once this module is imported (the fast-slow ones included).
"""

import dataclasses
import math

import keras
from keras import ops

from rum_tf import fast_slow
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.layers import RUM

_PACKAGE = "rum_tf"

# RUM's arguments that the shared flags expose, named as in `RUMCell`: all of them but the
# numerical epsilon, the initializers, the seed (which has a flag of its own) and the Keras GRU ones.
RUM_OPTIONS = tuple(
    a for a in RUM.CELL_ARGS if a not in ("eps", "seed") + RUM.KERAS_GRU_ARGS and not a.endswith("_initializer")
)
# The EUNN/GORU arguments that the shared flags expose (rum_tf.baselines).
BASELINE_OPTIONS = ("capacity", "fft", "complex")
# The fast-slow models' own arguments (rum_tf.fast_slow).
FS_OPTIONS = ("fast_units", "fast_layers", "keep_prob", "zoneout_keep_c")
# Every model argument with a flag of its own; a model takes a subset of them.
MODEL_OPTIONS = RUM_OPTIONS + BASELINE_OPTIONS + FS_OPTIONS
# The depth of a stack of `recurrent_layer`s (PTB's --num_layers): for the models that stack.
STACK_OPTION = "num_layers"


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model: `builder(units, *, seed, **options, **layer_kwargs)`; `stackable`:
    whether a task may stack several of its layers (a fast-slow layer is a stack already)."""

    name: str
    builder: object
    options: tuple
    description: str
    stackable: bool = True


_REGISTRY = {}


def register(name, *, options=(), description="", stackable=True):
    """Decorator registering `builder` as `--model=name`.

    The builder is called as `builder(units, seed=seed, **options, **layer_kwargs)`,
    where `options` holds only the names listed here and `layer_kwargs` are the usual
    `keras.layers.RNN` arguments (return_sequences, return_state, stateful, name, ...).
    It returns a Keras layer mapping [batch, time, features] to the RNN outputs.
    """

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        unknown = set(options) - set(MODEL_OPTIONS)
        if unknown:
            raise ValueError(f"model {name!r}: options {sorted(unknown)} are not in MODEL_OPTIONS")
        _REGISTRY[name] = ModelEntry(
            name, builder, tuple(options), description or (builder.__doc__ or "").strip(), stackable
        )
        return builder

    return decorate


def names():
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get(name):
    """The `ModelEntry` of `name`; ValueError naming the choices if unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(names())}")
    return _REGISTRY[name]


def takes(model, name):
    """Whether `--model=model` uses the option `name`: a model argument it was registered
    with, the stack depth if it stacks, and every option that is not model-specific."""
    if name == STACK_OPTION:
        return get(model).stackable
    return name not in MODEL_OPTIONS or name in get(model).options


def builder(config):
    """`(**layer_kwargs) -> layer`: the recurrent layer of a task config's --model, --units, --seed and
    model options (`flags.Config`), for a task's model builder."""

    def build(**layer_kwargs):
        return recurrent_layer(
            config.model, config.units, seed=config.seed, options=config.model_options(), **layer_kwargs
        )

    return build


def recurrent_layer(model, units, *, seed=None, options=None, **layer_kwargs):
    """The recurrent layer of `--model=model` with `units` units.

    Args:
      model: a registered name (`names()`).
      units: hidden size.
      seed: seed of the layer's own randomness (zoneout, dropout), so a run repeats.
      options: {argument: value} of model options (e.g. `RUM_OPTIONS`); every key
        must be one the model accepts.
      **layer_kwargs: `keras.layers.RNN` arguments (return_sequences, stateful, name...).
    """
    entry = get(model)
    options = dict(options or {})
    foreign = sorted(set(options) - set(entry.options))
    if foreign:
        raise ValueError(f"--model={model} does not take {', '.join(foreign)}")
    return entry.builder(units, seed=seed, **options, **layer_kwargs)


@register("rum", options=RUM_OPTIONS, description="Rotational Unit of Memory (rum_tf.RUM)")
def _rum(units, *, seed=None, **kwargs):
    return RUM(units, seed=seed, **kwargs)


@register("lstm", description="keras.layers.LSTM, forget-gate bias starting at 1 (TF1 forget_bias=1)")
def _lstm(units, *, seed=None, **kwargs):
    return keras.layers.LSTM(units, unit_forget_bias=True, seed=seed, **kwargs)


@register("gru", description="keras.layers.GRU with reset_after=False, the TF1 GRUCell equations")
def _gru(units, *, seed=None, **kwargs):
    return keras.layers.GRU(units, reset_after=False, seed=seed, **kwargs)


@register("rnn", description="keras.layers.SimpleRNN with tanh (TF1 BasicRNNCell)")
def _rnn(units, *, seed=None, **kwargs):
    return keras.layers.SimpleRNN(units, activation="tanh", seed=seed, **kwargs)


@register("eunn", options=BASELINE_OPTIONS, description="EUNN (Jing et al. 2017), rum_tf.baselines.EUNNCell")
def _eunn(units, *, seed=None, capacity=2, fft=False, complex=False, **kwargs):
    del seed  # the cell has no randomness of its own
    return keras.layers.RNN(EUNNCell(units, capacity=capacity, fft=fft, complex=complex), **kwargs)


@register("goru", options=("capacity", "fft"), description="GORU (Jing et al. 2019), rum_tf.baselines.GORUCell")
def _goru(units, *, seed=None, capacity=2, fft=False, **kwargs):
    del seed
    return keras.layers.RNN(GORUCell(units, capacity=capacity, fft=fft), **kwargs)


def recurrent_stack(model, units, num_layers, *, seed=0, options=None, **layer_kwargs):
    """The layers of `--model=model --num_layers=num_layers`: that many layers "<model>_<i>" of seeds
    seed + i; for a model that does not stack (a fast-slow layer is a stack already), its one layer
    "fast_slow" (the stack depth is refused for it when parsing: `takes`)."""
    if not get(model).stackable:
        return [recurrent_layer(model, units, seed=seed, options=options, name="fast_slow", **layer_kwargs)]
    return [
        recurrent_layer(model, units, seed=seed + i, options=options, name=f"{model}_{i}", **layer_kwargs)
        for i in range(num_layers)
    ]


@register(
    "fs_rum",
    options=RUM_OPTIONS + FS_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units), RUM slow cell (--units)",
)
def _fs_rum(units, **kwargs):
    return fast_slow.fs_rum(units, rum_options=RUM_OPTIONS, **kwargs)


@register(
    "fs_lstm",
    options=("zoneout_keep_h",) + FS_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units) and slow cell (--units)",
)
def _fs_lstm(units, **kwargs):
    return fast_slow.fs_lstm(units, **kwargs)


@register(
    "fs_goru",
    options=("zoneout_keep_h", "capacity", "fft") + FS_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units), GORU slow cell (--units)",
)
def _fs_goru(units, **kwargs):
    return fast_slow.fs_goru(units, **kwargs)


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
