"""The task binaries' configuration: declared once as data (`options`), read from absl flags, frozen.

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

from absl import app
from absl import flags as absl_flags

from rum_tf import official
from rum_tf.config import models

# The option declarations and the shared sections, for the binaries that declare their own.
from rum_tf.config.models import FastSlow, Model  # noqa: F401
from rum_tf.config.options import (  # noqa: F401
    Official,
    Optimizer,
    Run,
    Synthetic,
    boolean,
    enum,
    integer,
    real,
    string,
)
from rum_tf.data import files
from rum_tf.training import distribute, loop

SYNTHETIC = (Model, Optimizer, Run, Synthetic, Official)  # the copying and recall binaries' sections


class UsageError(Exception):
    """A bad command line; its message is the one line shown to the user."""


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
        """{argument: value} of the model options (`models.register`) the chosen model takes."""
        return {n: getattr(self, n) for n in models.model_options() if n in self.SPEC.names and self.applies(n)}

    def model_label(self):
        """E.g. "rum lambda_=1 eta=0.1": the model and its arguments that differ from the shared defaults."""
        base = self.SPEC.base_defaults
        changed = [f"{n}={v}" for n, v in self.model_options().items() if v != base[n]]
        return " ".join([self.model] + changed)

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
        """(task, run_config); with --init_from_official, the pair that tests the official checkpoint's
        weights (`rum_tf.official.load_task_model`) in a run of 0 training steps."""
        path = getattr(self, "init_from_official", None)
        if not path:
            return task, run_config
        build, graph, flags = task.build_model, official.TASK_GRAPHS[self.SPEC.task], dict(run_config.flags)

        def build_model():
            model = build()
            try:
                official.load_task_model(model, path, graph, symbol_order, flags=flags)
            except ValueError as e:
                raise loop.RunError(f"--init_from_official={path}: {e}") from None
            return model

        return dataclasses.replace(task, build_model=build_model), dataclasses.replace(run_config, steps=0)


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
