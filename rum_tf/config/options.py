"""The options of the task binaries, declared once as data: frozen dataclass fields with their default,
help text and check (`integer`, `real`, `boolean`, `string`, `enum`), and the shared sections:

  Optimizer  --optimizer, --learning_rate, --rmsprop_decay, --clip_norm
  Run        --batch_size, --eval_batch_size, --steps, --eval_every, --seed, --jit_compile,
             --strategy, --tpu, --stop_when, --output_dir, --checkpoint_every
  Synthetic  --T, --test_size (copying memory and associative recall)
  Official   --init_from_official (copying, recall, PTB: test an official checkpoint)

The models declare their own options (`models.register`), and `models.Model` / `models.FastSlow`
are their sections.

`flags.TaskConfig` turns a binary's sections into its command line and its frozen config.
"""

import dataclasses
import math
import operator
import os

from rum_tf.training import callbacks, distribute, optimizers

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


def real(default, help, *, within=None, unset=None, **kwargs):
    """A float option in the interval `within`, e.g. "(0, 1]" or "[0, inf)", or None where `unset` (by
    default: where the default is None); NaN and infinity are refused before its check."""
    if within is not None:
        low, high = (float(x) for x in within[1:-1].split(","))
        above = operator.gt if within[0] == "(" else operator.ge
        below = operator.lt if within[-1] == ")" else operator.le
        unset = default is None if unset is None else unset
        kwargs["check"] = lambda v: (unset and v is None) or (v is not None and above(v, low) and below(v, high))
        bound = f"{'>' if within[0] == '(' else '>='} {low:g}" if math.isinf(high) else f"in {within}"
        kwargs["message"] = f"--{{name}} must be {bound}" + (" (or unset)" if unset else "")
    return _option("float", default, help, **kwargs)


def boolean(default, help, **kwargs):
    return _option("boolean", default, help, **kwargs)


def string(default, help, **kwargs):
    return _option("string", default, help, **kwargs)


def enum(default, choices, help, **kwargs):
    return _option("enum", default, help, choices=tuple(choices), **kwargs)


def copy(declaration):
    """A fresh field of the same declaration (a dataclass takes a field over)."""
    return dataclasses.field(default=declaration.default, metadata=declaration.metadata)


def annotation(declaration):
    """The field's Python type, from its kind."""
    kind = {"integer": int, "float": float, "boolean": bool}.get(declaration.metadata["kind"], str)
    return kind if declaration.default is not None else kind | None


# ---------------------------------------------------------------------------- checks


def _stop_rule(text):
    """--stop_when parsed, once, into a `callbacks.StopRule`; empty unsets it (a flagfile's rule)."""
    return callbacks.StopRule.parse(text) if text.strip() else None


def _strategy_ok(name):
    distribute.check_strategy(name)
    return True


def _official_checkpoint(path):
    return path is None or os.path.exists(path + ".index") or os.path.isdir(path)


# ---------------------------------------------------------------------------- the shared sections


@dataclasses.dataclass(frozen=True)
class Optimizer:
    optimizer: str = enum(
        "rmsprop", optimizers.OPTIMIZERS, "rmsprop (TF1 RMSProp: epsilon 1e-10, no momentum) or adam (epsilon 1e-8)."
    )
    learning_rate: float = real(1e-3, "Learning rate.", within="(0, inf)")
    rmsprop_decay: float = real(0.9, "RMSProp decay (Keras rho).", within="[0, 1)")
    clip_norm: float | None = real(None, "Clip gradients to this global norm (unset or 0 = off).", within="[0, inf)")


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
