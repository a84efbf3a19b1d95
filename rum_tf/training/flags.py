"""The task binaries' configuration: declared once as data, read from absl flags, frozen.

Every option is a field of a frozen dataclass, declared with its default, help text and
check (`integer`, `real`, `boolean`, `string`, `enum`). The shared sections:

  Model      --model and its arguments, named as in `RUMCell` (--lambda_, --eta, ...)
  Optimizer  --optimizer, --learning_rate, --rmsprop_decay, --clip_norm
  Run        --batch_size, --eval_batch_size, --steps, --eval_every, --seed, --jit_compile,
             --strategy, --tpu, --stop_when, --output_dir, --checkpoint_every
  Synthetic  --T, --test_size (copying memory and associative recall)
  Official   --init_from_official (copying, recall, PTB: test an official checkpoint)
  FastSlow   --fast_units, --fast_layers, --keep_prob, --zoneout_keep_c (PTB's fast-slow models)

A binary declares its configuration as a `TaskConfig`: the sections it uses, a dataclass
of its own fields, its defaults (the official script's settings) and its checks. From
that one declaration come the command line's flags (a private `absl.flags.FlagValues`,
so binaries never clash), and parsing yields one frozen config object (`Config`): a bad
value, an unknown flag, or a model argument given to a model that does not take it
(`models.takes`) ends the program with one line on stderr and exit status 2, before
anything is built. Nothing writes flag values after parsing: a variant of a config is
`dataclasses.replace(config, ...)`.
"""

import dataclasses
import math
import os
import signal
import sys
import tempfile

import keras
from absl import app
from absl import flags as absl_flags

from rum_tf.data import files
from rum_tf.training import callbacks, distribute, loop, models, official_tasks, optimizers


class UsageError(Exception):
    """A bad command line; its message is the one line shown to the user."""


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


def _writable_dir(path):
    """Checked when parsing (it creates the folder), not when a config is made in Python."""
    if not path:
        raise ValueError("--output_dir is required")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(f"--output_dir={path} is not a writable folder ({e.strerror or e})") from None
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


def _steps_multiple(config):
    if getattr(config, "steps", None) and getattr(config, "eval_every", None) and config.steps % config.eval_every:
        raise ValueError("--steps must be a multiple of --eval_every")


# ---------------------------------------------------------------------------- a task's configuration


class Config:
    """Base of every task's frozen config class (made by `TaskConfig`): what the harness needs from it."""

    SPEC = None  # the TaskConfig that made the class

    def __post_init__(self):
        self.SPEC.validate(self)

    def applies(self, name):
        """False for a model argument that --model does not take (`models.takes`)."""
        return models.takes(self.model, name)

    def values(self):
        """{flag: value} of everything that defines the run (arguments the model does not take left out), as
        JSON values (a `StopRule` as its text)."""
        return {n: _plain(getattr(self, n)) for n in self.SPEC.names if self.applies(n)}

    def flagfile_text(self):
        """The resolved flags as a flagfile (`--flagfile=` repeats the run)."""
        flag_values = self.SPEC.flag_values()
        lines = [f"# {self.SPEC.task}: resolved flags of this run"]
        for name, value in self.values().items():
            if value is not None:
                flag_values[name].value = value
                lines.append(flag_values[name].serialize())
        return "\n".join(lines) + "\n"

    def model_options(self):
        """{argument: value} of the model arguments (`models.MODEL_OPTIONS`) the chosen model takes."""
        return {n: getattr(self, n) for n in models.MODEL_OPTIONS if n in self.SPEC.names and self.applies(n)}

    def model_label(self):
        """E.g. "rum lambda_=1 eta=0.1": the model and its arguments that differ from the shared defaults."""
        base = self.SPEC.base_defaults
        changed = [f"{n}={v}" for n, v in self.model_options().items() if v != base[n]]
        return " ".join([self.model] + changed)

    def recurrent_layer(self, **layer_kwargs):
        """The `--model` recurrent layer with `--units` and the model's arguments."""
        return models.recurrent_layer(
            self.model, self.units, seed=self.seed, options=self.model_options(), **layer_kwargs
        )

    @property
    def evaluation_batch_size(self):
        return getattr(self, "eval_batch_size", None) or self.batch_size

    def run_config(self, **overrides):
        """The harness settings of this run (`loop.RunConfig`); `overrides` for what the task computes
        (PTB: steps and eval_every from its epochs)."""
        fields = {f.name for f in dataclasses.fields(loop.RunConfig)}
        values = dict(
            task=self.SPEC.task,
            flags=self.values(),
            flagfile_text=self.flagfile_text(),
            resume_neutral=self.SPEC.resume_neutral,
        )
        values.update({n: getattr(self, n) for n in self.SPEC.names if n in fields and n not in values})
        values.update(overrides)
        return loop.RunConfig(**{k: v for k, v in values.items() if k in fields})

    def from_official(self, task, run_config, symbol_order=None):
        """(task, run_config); with --init_from_official, the pair that tests the official
        checkpoint's weights instead of training (`official_tasks.evaluate_official`)."""
        path = getattr(self, "init_from_official", None)
        if not path:
            return task, run_config
        return official_tasks.evaluate_official(
            task, run_config, path, official_tasks.GRAPHS[self.SPEC.task], symbol_order
        )


class TaskConfig:
    """A task binary's configuration, declared once.

    Args:
      task: the task's name (results.json "task").
      sections: frozen dataclasses whose fields are the binary's options, in flag order
        (the shared sections above, then the task's own).
      defaults: {field: default} of this task (the official script's settings).
      exclude: shared fields the task does not have (PTB counts epochs, not --steps).
      checks: callables (config) run on every config made; a ValueError is a usage error.
    """

    def __init__(self, task, sections, *, defaults=None, exclude=(), checks=()):
        fields = [f for s in sections for f in dataclasses.fields(s) if f.name not in exclude]
        self.task = task
        self.names = tuple(f.name for f in fields)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{task}: a field is declared twice in {[s.__name__ for s in sections]}")
        defaults = dict(defaults or {})
        unknown = set(defaults) - set(self.names)
        if unknown:
            raise ValueError(f"{task}: defaults for unknown fields {sorted(unknown)}")
        self.base_defaults = {f.name: f.default for f in fields}
        self.fields = {f.name: f for f in fields}
        self.checks = (_steps_multiple,) + tuple(checks)
        self.resume_neutral = tuple(f.name for f in fields if f.metadata["resume_neutral"])
        self.cls = dataclasses.make_dataclass(
            f"{task.capitalize()}Config",
            [
                (f.name, f.type, dataclasses.field(default=defaults.get(f.name, f.default), metadata=f.metadata))
                for f in fields
            ],
            bases=(Config,),
            frozen=True,
            namespace={"SPEC": self, "__doc__": f"The {task} binary's configuration."},
        )
        self.defaults = {f.name: f.default for f in dataclasses.fields(self.cls)}

    def validate(self, config):
        """ValueError (one line) unless every field passes its check and every task check passes."""
        for name, field in self.fields.items():
            check, value = field.metadata["check"], getattr(config, name)
            if field.metadata["kind"] == "float" and value is not None and not math.isfinite(value):
                raise ValueError(f"flag --{name}={value}: --{name} must be a finite number")
            if check is None:
                continue
            try:
                ok = check(value)
            except ValueError as e:
                raise ValueError(f"flag --{name}={value}: {e}") from None
            if not ok:
                raise ValueError(f"flag --{name}={value}: {field.metadata['message'].format(name=name)}")
        for check in self.checks:
            check(config)

    def flag_values(self):
        """A new `absl.flags.FlagValues` holding this binary's flags, with this task's defaults."""
        flag_values = absl_flags.FlagValues()
        for name, field in self.fields.items():
            kind, help_text, default = field.metadata["kind"], field.metadata["help"], self.defaults[name]
            if kind == "enum":
                absl_flags.DEFINE_enum(
                    name, default, list(field.metadata["choices"]), help_text, flag_values=flag_values
                )
            else:
                getattr(absl_flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=flag_values)
        return flag_values

    def make(self, values, given=None):
        """The frozen config of {field: value}; UsageError (one line) if it is not a valid run.

        `given`: the names set on the command line; a model argument among them that --model
        does not take is refused (a flag that silently does nothing would be worse).
        """
        values = dict(values)
        try:
            for name, value in values.items():
                convert = self.fields[name].metadata["convert"]
                if convert is not None and value is not None:
                    try:
                        values[name] = convert(value)
                    except ValueError as e:
                        raise ValueError(f"flag --{name}={value}: {e}") from None
            config = self.cls(**values)
            if given is None:  # made in Python: the arguments set to something else than the default
                given = [n for n in self.names if values.get(n, self.defaults[n]) != self.defaults[n]]
            for name in given:
                if not config.applies(name):
                    raise ValueError(f"--{name} does not apply to --model={config.model}")
            if "output_dir" in self.names:
                _writable_dir(config.output_dir)
        except ValueError as e:
            raise UsageError(_one_line(e)) from None
        return config

    def parse(self, argv):
        """The frozen config of a command line (argv[0] = program); UsageError with one line on bad input."""
        flag_values = self.flag_values()
        try:
            rest = flag_values(list(argv), known_only=True)  # reads --flagfile too
            rest = absl_flags.FLAGS(rest)  # absl's own flags (--verbosity, ...); an unknown flag fails here
        except absl_flags.Error as e:
            raise UsageError(_one_line(e)) from None
        except UnicodeDecodeError as e:
            files_given = [a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")]
            raise UsageError(
                f"--flagfile={', '.join(files_given) or '?'}: not UTF-8 text (byte {e.object[e.start : e.start + 1]!r} "
                f"at offset {e.start})"
            ) from None
        if len(rest) > 1:
            raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
        given = [n for n in self.names if flag_values[n].present]
        return self.make({n: flag_values[n].value for n in self.names}, given)

    def help(self, program):
        doc = (sys.modules["__main__"].__doc__ or "").strip()
        return f"{doc}\n\nflags of {os.path.basename(program)}:\n{self.flag_values().get_help()}\n"

    def run(self, main):
        """`app.run`: parse sys.argv into the config, then `main(config)`; a usage error or a
        `loop.RunError` / `files.DataError` is one line on stderr, exit 2."""

        def parser(argv):
            if any(a in ("-h", "-?", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
                print(self.help(argv[0]))
                sys.exit(0)
            try:
                return self.parse(argv)
            except UsageError as e:
                _fail(argv[0], e)

        def guarded_main(config):
            for signum in (signal.SIGINT, signal.SIGTERM):  # one line naming the signal; folder and lock left clean
                signal.signal(signum, _interrupt)
            try:
                distribute.start(getattr(config, "strategy", "default"))  # multi-worker: before TensorFlow starts
                main(config)  # its return value is for callers in Python, not an exit status
            except (loop.RunError, files.DataError, loop.Interrupted) as e:
                _fail(sys.argv[0], e)
            except KeyboardInterrupt as e:  # before the run took its folder, or after it ended
                _fail(sys.argv[0], f"interrupted{f' by {e.args[0]}' if e.args else ''}")

        app.run(guarded_main, flags_parser=parser)


def _interrupt(signum, frame):
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _plain(value):
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _one_line(error):
    return str(error).strip().replace("\n", " ")


def _fail(program, error):
    print(f"{os.path.basename(program)}: error: {_one_line(error)}", file=sys.stderr)
    sys.exit(2)
