"""The options of the task binaries, declared once as data: frozen dataclass fields with their default,
help text and check (`integer`, `real`, `boolean`, `string`, `enum`), and the shared sections:

  Model      --model and its arguments, named as in `RUMCell` (--lambda_, --eta, ...)
  Optimizer  --optimizer, --learning_rate, --rmsprop_decay, --clip_norm
  Run        --batch_size, --eval_batch_size, --steps, --eval_every, --seed, --jit_compile,
             --strategy, --tpu, --stop_when, --output_dir, --checkpoint_every
  Synthetic  --T, --test_size (copying memory and associative recall)
  Official   --init_from_official (copying, recall, PTB: test an official checkpoint)
  FastSlow   --fast_units, --fast_layers, --keep_prob, --zoneout_keep_c (PTB's fast-slow models)

`flags.TaskConfig` turns a binary's sections into its command line and its frozen config.
"""

import dataclasses
import math
import os

import keras

from rum_tf.training import callbacks, distribute, models, optimizers

# ---------------------------------------------------------------------------- declaring options


def _option(kind, default, help, *, check=None, message=None, choices=None, resume_neutral=False, convert=None):
    """A config field: its flag `kind`, help, `check(value)` (False, or a ValueError, is a usage error
    worded `message`), whether it may change between the sessions of one run (`resume_neutral`:
    it does not change what is trained up to a step) and `convert` (canonical form, ValueError if bad)."""
    return dataclasses.field(
        default=default,
        metadata=dict(
            kind=kind,
            help=help,
            check=check,
            message=message,
            choices=choices,
            resume_neutral=resume_neutral,
            convert=convert,
        ),
    )


def integer(default, help, *, minimum=None, maximum=None, **kwargs):
    """An int option in [`minimum`, `maximum`] (None also allowed where the default is None)."""
    if minimum is not None:
        unset = default is None
        top = math.inf if maximum is None else maximum
        kwargs["check"] = lambda v: (unset and v is None) or (v is not None and minimum <= v <= top)
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        kwargs["message"] = f"--{{name}} must be {bounds}" + (" (or unset)" if unset else "")
    return _option("integer", default, help, **kwargs)


def real(default, help, **kwargs):
    """A float option; NaN and infinity are refused before its own check."""
    return _option("float", default, help, **kwargs)


def boolean(default, help, **kwargs):
    return _option("boolean", default, help, **kwargs)


def string(default, help, **kwargs):
    return _option("string", default, help, **kwargs)


def enum(default, choices, help, **kwargs):
    return _option("enum", default, help, choices=tuple(choices), **kwargs)


# ---------------------------------------------------------------------------- checks


def _registered_model(name):
    if name not in models.names():
        raise ValueError(f"unknown --model={name}; choose from {', '.join(models.names())}")
    return True


def _known_activation(name):
    try:
        keras.activations.get(name)
    except ValueError:
        return False
    return True


def _stop_rule(text):
    """--stop_when parsed, once, into a `callbacks.StopRule`; empty unsets it (a flagfile's rule)."""
    return callbacks.StopRule.parse(text) if text.strip() else None


def _strategy_ok(name):
    distribute.check_strategy(name)
    return True


def _official_checkpoint(path):
    return path is None or os.path.exists(path + ".index") or os.path.isdir(path)


def _unit_interval(v, unset=True):
    return (unset and v is None) or (v is not None and 0 < v <= 1)


# ---------------------------------------------------------------------------- the shared sections


@dataclasses.dataclass(frozen=True)
class Model:
    """The recurrent model; which model takes which argument is `models.takes`."""

    model: str = string(
        "rum",
        "Recurrent model: a name registered in rum_tf.training.models (rum, lstm, gru, rnn, ...).",
        check=_registered_model,
    )
    units: int = integer(100, "Hidden size of the recurrent layer.", minimum=1)
    lambda_: int = integer(
        0,
        "RUM: 0 rotates the state, 1 adds the associative memory.",
        check=lambda v: v in (0, 1),
        message="--lambda_ must be 0 or 1",
    )
    eta: float | None = real(
        None,
        "RUM: time normalisation, the norm the state is scaled to (unset = off).",
        check=lambda v: v is None or v > 0,
        message="--eta must be > 0 (or unset)",
    )
    activation: str = string(
        "relu",
        "RUM: activation of the candidate.",
        check=_known_activation,
        message="--activation must name a Keras activation (relu, tanh, ...)",
    )
    use_layer_norm: bool = boolean(False, "RUM: layer norm on the gates and the candidate.")
    zoneout_keep_h: float | None = real(
        None,
        "RUM: zoneout keep probability of the state (unset = off).",
        check=_unit_interval,
        message="--zoneout_keep_h must be in (0, 1] (or unset)",
    )
    update_gate: bool = boolean(True, "RUM: mix the old state in through the update gate.")
    trainable_rot: bool = boolean(True, "RUM: train the gate kernel.")
    track_angle: bool = boolean(False, "RUM: output [cos θ; h] instead of h.")
    use_embedding_bias: bool = boolean(False, "RUM: bias on the input embedding (the 2017 code had one).")
    capacity: int = integer(2, "EUNN/GORU: layers of the tunable transition.", minimum=1)
    fft: bool = boolean(False, "EUNN/GORU: FFT-style transition (ceil(log2 N) layers).")
    complex: bool = boolean(False, "EUNN: unitary (complex) instead of orthogonal.")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    optimizer: str = enum(
        "rmsprop", optimizers.OPTIMIZERS, "rmsprop (TF1 RMSProp: epsilon 1e-10, no momentum) or adam (epsilon 1e-8)."
    )
    learning_rate: float = real(
        1e-3, "Learning rate.", check=lambda v: v is not None and v > 0, message="--learning_rate must be > 0"
    )
    rmsprop_decay: float = real(
        0.9,
        "RMSProp decay (Keras rho).",
        check=lambda v: v is not None and 0 <= v < 1,
        message="--rmsprop_decay must be in [0, 1)",
    )
    clip_norm: float | None = real(
        None,
        "Clip gradients to this global norm (unset or 0 = off).",
        check=lambda v: v is None or v >= 0,
        message="--clip_norm must be >= 0 (or unset)",
    )


@dataclasses.dataclass(frozen=True)
class Run:
    batch_size: int = integer(128, "Training batch size (global, over all replicas).", minimum=1)
    eval_batch_size: int | None = integer(None, "Batch size of validation and test (unset = --batch_size).", minimum=1)
    steps: int = integer(1000, "Training steps (iterations).", minimum=1, resume_neutral=True)
    eval_every: int = integer(
        100,
        "Steps between evaluations (log line, curve point, validation, checkpoint); --steps must be a multiple.",
        minimum=1,
    )
    seed: int = integer(
        0, "Seed of the data, the initial weights and the training noise.", minimum=0, maximum=2**32 - 1
    )
    jit_compile: str = enum(
        "auto",
        ("auto", "true", "false"),
        "Compile the train step with XLA; auto: on a GPU or under JAX.",
        resume_neutral=True,
    )
    strategy: str = enum(
        "default",
        distribute.STRATEGIES,
        "tf.distribute strategy (TensorFlow backend only).",
        check=_strategy_ok,
        resume_neutral=True,
    )
    tpu: str = string("", "TPU address for --strategy=tpu (empty = local TPU).", resume_neutral=True)
    stop_when: callbacks.StopRule | None = string(
        None,
        "End the run early once METRIC OP THRESHOLD[:TIMES] holds at TIMES "
        "evaluations in a row, e.g. val_accuracy>=0.99:3 (METRIC: a curve.csv column; "
        "--steps stays the upper bound). Unset (or empty, to unset a flagfile's) = run all --steps.",
        convert=_stop_rule,
        resume_neutral=True,
    )
    output_dir: str | None = string(
        None,
        "Folder of the run: flags, checkpoints, curve, results.json. Re-running the same command resumes the run.",
        resume_neutral=True,
    )
    checkpoint_every: int | None = integer(
        None,
        "Steps between checkpoints inside an evaluation interval (PTB: "
        "windows), so a killed run loses little (unset = at each evaluation "
        "only).",
        minimum=1,
        resume_neutral=True,
    )


@dataclasses.dataclass(frozen=True)
class Synthetic:
    T: int = integer(
        200,
        "Copying: delay between the symbols and the marker; recall: twice the number of key-value pairs.",
        minimum=1,
    )
    test_size: int = integer(10_000, "Held-out sequences of the final test.", minimum=1)


@dataclasses.dataclass(frozen=True)
class Official:
    init_from_official: str | None = string(
        None,
        "A TF1 checkpoint (prefix or folder) of this task's official script: load its recurrent cell and output "
        "layer into the model the model flags describe, then test it; no training.",
        check=_official_checkpoint,
        message="--init_from_official must be a TF1 checkpoint prefix (PREFIX.index exists) or its folder",
    )


@dataclasses.dataclass(frozen=True)
class FastSlow:
    """The fast-slow models' arguments (`models.FS_OPTIONS`)."""

    fast_units: int = integer(700, "Fast-slow models: size of the fast LN-LSTM cells.", minimum=1)
    fast_layers: int = integer(2, "Fast-slow models: number of fast cells (>= 2).", minimum=2)
    keep_prob: float = real(
        0.65,
        "Fast-slow models: dropout keep probability (training only).",
        check=lambda v: v is not None and 0 < v <= 1,
        message="--keep_prob must be in (0, 1]",
    )
    zoneout_keep_c: float | None = real(
        0.5,
        "LN-LSTM cells: zoneout keep probability of c (unset = off).",
        check=_unit_interval,
        message="--zoneout_keep_c must be in (0, 1] (or unset)",
    )


SYNTHETIC = (Model, Optimizer, Run, Synthetic, Official)
