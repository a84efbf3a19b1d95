"""Model registry: a name (`--model`) -> a recurrent layer and the options it declares.

A task builds its own model around `recurrent_layer(...)`: its input front-end (`rum_tf.layers.OneHot`,
an embedding, ...), the recurrent core chosen by name, and its output head. Each
model is registered with the options it takes, declared as data (`options.integer`, ...):

    CAPACITY = {"capacity": options.integer(2, "Layers of the transition.", minimum=1)}

    @models.register("goru", options=CAPACITY)
    def _goru(units, *, seed, capacity=2, **layer_kwargs):
        return rum_tf.Recurrent(GORUCell(units, capacity=capacity), **layer_kwargs)

An option declared by several models is one declaration (the same object). The binaries' flag
sections `Model` and `FastSlow` are made from the registry (`section`), and asking a model for an
option it did not declare is an error, so a flag meant for RUM cannot silently do nothing.
"""

import dataclasses

import keras

from rum_tf import fast_slow
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.config import options as opt
from rum_tf.layers import RUM, Recurrent


def _known_activation(name):
    try:
        keras.activations.get(name)
    except ValueError:
        return False
    return True


ZONEOUT_H = {
    "zoneout_keep_h": opt.real(None, "RUM: zoneout keep probability of the state (unset = off).", within="(0, 1]")
}
# RUMCell's arguments with a flag, named as in `RUMCell`: all but the numerical epsilon, the
# initializers, the seed (a flag of its own) and the Keras GRU ones.
RUM_OPTIONS = {
    "lambda_": opt.integer(
        0,
        "RUM: 0 rotates the state, 1 adds the associative memory.",
        check=lambda v: v in (0, 1),
        message="--lambda_ must be 0 or 1",
    ),
    "eta": opt.real(None, "RUM: time normalisation, the norm the state is scaled to (unset = off).", within="(0, inf)"),
    "activation": opt.string(
        "relu",
        "RUM: activation of the candidate.",
        check=_known_activation,
        message="--activation must name a Keras activation (relu, tanh, ...)",
    ),
    "use_layer_norm": opt.boolean(False, "RUM: layer norm on the gates and the candidate."),
    **ZONEOUT_H,
    "update_gate": opt.boolean(True, "RUM: mix the old state in through the update gate."),
    "trainable_rot": opt.boolean(True, "RUM: train the gate kernel."),
    "track_angle": opt.boolean(False, "RUM: output [cos θ; h] instead of h."),
    "use_embedding_bias": opt.boolean(False, "RUM: bias on the input embedding (the 2017 code had one)."),
}
GORU_OPTIONS = {
    "capacity": opt.integer(2, "EUNN/GORU: layers of the tunable transition.", minimum=1),
    "fft": opt.boolean(False, "EUNN/GORU: FFT-style transition (ceil(log2 N) layers)."),
}
EUNN_OPTIONS = {**GORU_OPTIONS, "complex": opt.boolean(False, "EUNN: unitary (complex) instead of orthogonal.")}
FAST_SLOW_OPTIONS = {
    "fast_units": opt.integer(700, "Fast-slow models: size of the fast LN-LSTM cells.", minimum=1),
    "fast_layers": opt.integer(2, "Fast-slow models: number of fast cells (>= 2).", minimum=2),
    "keep_prob": opt.real(0.65, "Fast-slow models: dropout keep probability (training only).", within="(0, 1]"),
    "zoneout_keep_c": opt.real(
        0.5, "LN-LSTM cells: zoneout keep probability of c (unset = off).", within="(0, 1]", unset=True
    ),
}
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


_DECLARED = {}  # option name -> its declaration, in the order the models declared them


def register(name, *, options=None, description="", stackable=True):
    """Decorator registering `builder` as `--model=name`, with the options it declares.

    The builder is called as `builder(units, seed=seed, **options, **layer_kwargs)`, where
    `options` holds only names of its `options` ({name: declaration}) and `layer_kwargs` are the
    usual `keras.layers.RNN` arguments (return_sequences, return_state, stateful, name, ...). It
    returns a Keras layer mapping [batch, time, features] to the RNN outputs.
    """
    options = dict(options or {})

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        for option, declaration in options.items():
            if _DECLARED.get(option, declaration) is not declaration:
                raise ValueError(f"model {name!r}: option {option!r} is declared differently by another model")
        _DECLARED.update(options)
        _REGISTRY[name] = ModelEntry(
            name, builder, tuple(options), description or (builder.__doc__ or "").strip(), stackable
        )
        return builder

    return decorate


def model_options():
    """Every declared model option's name: a model takes a subset of them."""
    return tuple(_DECLARED)


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
    return name not in _DECLARED or name in get(model).options


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


@register("eunn", options=EUNN_OPTIONS, description="EUNN (Jing et al. 2017), Recurrent(rum_tf.baselines.EUNNCell)")
def _eunn(units, *, seed=None, capacity=2, fft=False, complex=False, **kwargs):
    del seed  # the cell has no randomness of its own
    return Recurrent(EUNNCell(units, capacity=capacity, fft=fft, complex=complex), **kwargs)


@register("goru", options=GORU_OPTIONS, description="GORU (Jing et al. 2019), Recurrent(rum_tf.baselines.GORUCell)")
def _goru(units, *, seed=None, capacity=2, fft=False, **kwargs):
    del seed
    return Recurrent(GORUCell(units, capacity=capacity, fft=fft), **kwargs)


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


# The fast-slow layers are stacks already (`stackable=False`): a task builds one of them.
register(
    "fs_rum",
    options=RUM_OPTIONS | FAST_SLOW_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units), RUM slow cell (--units)",
)(fast_slow.fs_rum)
register(
    "fs_lstm",
    options=ZONEOUT_H | FAST_SLOW_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units) and slow cell (--units)",
)(fast_slow.fs_lstm)
register(
    "fs_goru",
    options=ZONEOUT_H | GORU_OPTIONS | FAST_SLOW_OPTIONS,
    stackable=False,
    description="Fast-Slow RNN, LN-LSTM fast cells (--fast_units), GORU slow cell (--units)",
)(fast_slow.fs_goru)


def _registered_model(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown --model={name}; choose from {', '.join(names())}")
    return True


def section(name, option_names, doc, *, with_model=False):
    """A frozen dataclass of flag fields: `option_names`' declarations (and first --model and
    --units when `with_model`), for `flags.TaskConfig`."""
    fields = []
    if with_model:
        fields += [
            ("model", opt.string("rum", "Recurrent model: a name registered in rum_tf.config.models (rum, "
                                 "lstm, gru, rnn, ...).", check=_registered_model)),
            ("units", opt.integer(100, "Hidden size of the recurrent layer.", minimum=1)),
        ]  # fmt: skip
    fields += [(n, opt.copy(_DECLARED[n])) for n in option_names]
    return dataclasses.make_dataclass(
        name, [(n, opt.annotation(f), f) for n, f in fields], frozen=True, namespace={"__doc__": doc}
    )


# The flag sections: every option of the models that stack, and the fast-slow models' own (PTB).
_FAST_SLOW_ONLY = [n for n in _DECLARED if all(not e.stackable for e in _REGISTRY.values() if n in e.options)]
Model = section(
    "Model",
    [n for n in _DECLARED if n not in _FAST_SLOW_ONLY],
    "--model, --units and the options of the registered models.",
    with_model=True,
)
FastSlow = section("FastSlow", _FAST_SLOW_ONLY, "The fast-slow models' own options.")
