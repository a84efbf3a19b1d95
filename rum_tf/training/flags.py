"""The flags every task binary shares, defined once, validated where defined.

Groups:
  model      --model and its arguments, named as in `RUMCell` (--lambda_, --eta, ...)
  optimizer  --optimizer, --learning_rate, --rmsprop_decay, --clip_norm
  run        --batch_size, --eval_batch_size, --steps, --eval_every, --stop_when,
             --seed, --jit_compile, --strategy, --tpu, --output_dir
  synthetic  --T, --test_size (copying memory and associative recall)
  official   --init_from_official (copying, recall, PTB: test an official checkpoint)

A binary describes itself with a `TaskFlags` (its groups, its defaults, its own flags)
and runs through `TaskFlags.run(main)`: a bad value, a flag of a group the binary does
not use, or a RUM argument given to another model ends the program with one line on
stderr and exit status 2, before anything is built.
"""

import os
import sys
import tempfile

import keras
from absl import app, flags

from rum_tf.training import callbacks, distribute, loop, models, official_tasks, optimizers

FLAGS = flags.FLAGS

_GROUPS = {"model": [], "optimizer": [], "run": [], "synthetic": [], "official": []}
ALL_GROUPS = tuple(_GROUPS)
SYNTHETIC_GROUPS = ("model", "optimizer", "run", "synthetic")

# Flags that may change between the sessions of one run (they do not change what is
# trained up to a step): --steps and --stop_when can extend a finished run, the others are
# how it is executed.
RESUME_NEUTRAL = ("output_dir", "steps", "stop_when", "jit_compile", "strategy", "tpu")


class UsageError(Exception):
    """A bad command line; its message is the one line shown to the user."""


def _in(group, holder):
    _GROUPS[group].append(holder.name)
    return holder


def _validator(name, predicate, message):
    flags.register_validator(name, predicate, message=message)


# ---------------------------------------------------------------------------- model

MODEL = _in("model", flags.DEFINE_string("model", "rum", "Recurrent model: a name registered in rum_tf.training.models "
                                         "(rum, lstm, gru, rnn, ...)."))
UNITS = _in("model", flags.DEFINE_integer("units", 100, "Hidden size of the recurrent layer."))
LAMBDA = _in("model", flags.DEFINE_integer("lambda_", 0, "RUM: 0 rotates the state, 1 adds the associative memory."))
ETA = _in("model", flags.DEFINE_float("eta", None, "RUM: time normalisation, the norm the state is scaled to "
                                      "(unset = off)."))
ACTIVATION = _in("model", flags.DEFINE_string("activation", "relu", "RUM: activation of the candidate."))
USE_LAYER_NORM = _in("model", flags.DEFINE_boolean("use_layer_norm", False, "RUM: layer norm on the gates and the "
                                                   "candidate."))
ZONEOUT_KEEP_H = _in("model", flags.DEFINE_float("zoneout_keep_h", None, "RUM: zoneout keep probability of the state "
                                                 "(unset = off)."))
UPDATE_GATE = _in("model", flags.DEFINE_boolean("update_gate", True, "RUM: mix the old state in through the update gate."))
TRAINABLE_ROT = _in("model", flags.DEFINE_boolean("trainable_rot", True, "RUM: train the gate kernel."))
TRACK_ANGLE = _in("model", flags.DEFINE_boolean("track_angle", False, "RUM: output [cos θ; h] instead of h."))
USE_EMBEDDING_BIAS = _in("model", flags.DEFINE_boolean("use_embedding_bias", False, "RUM: bias on the input embedding "
                                                       "(the 2017 code had one)."))
CAPACITY = _in("model", flags.DEFINE_integer("capacity", 2, "EUNN/GORU: layers of the tunable transition."))
FFT = _in("model", flags.DEFINE_boolean("fft", False, "EUNN/GORU: FFT-style transition (ceil(log2 N) layers)."))
COMPLEX = _in("model", flags.DEFINE_boolean("complex", False, "EUNN: unitary (complex) instead of orthogonal."))

def _registered_model(name):
    if name not in models.names():
        raise flags.ValidationError(f"unknown --model={name}; choose from {', '.join(models.names())}")
    return True


_validator("model", _registered_model, "unknown --model")
_validator("units", lambda v: v is not None and v >= 1, "--units must be >= 1")
_validator("lambda_", lambda v: v in (0, 1), "--lambda_ must be 0 or 1")
_validator("eta", lambda v: v is None or v > 0, "--eta must be > 0 (or unset)")
_validator("capacity", lambda v: v is not None and v >= 1, "--capacity must be >= 1")
_validator("zoneout_keep_h", lambda v: v is None or 0 < v <= 1, "--zoneout_keep_h must be in (0, 1] (or unset)")


def _known_activation(name):
    try:
        keras.activations.get(name)
    except ValueError:
        return False
    return True


_validator("activation", _known_activation, "--activation must name a Keras activation (relu, tanh, ...)")

# ---------------------------------------------------------------------------- optimizer

OPTIMIZER = _in("optimizer", flags.DEFINE_enum("optimizer", "rmsprop", list(optimizers.OPTIMIZERS),
                                               "rmsprop (TF1 RMSProp: epsilon 1e-10, no momentum) or adam "
                                               "(epsilon 1e-8)."))
LEARNING_RATE = _in("optimizer", flags.DEFINE_float("learning_rate", 1e-3, "Learning rate."))
RMSPROP_DECAY = _in("optimizer", flags.DEFINE_float("rmsprop_decay", 0.9, "RMSProp decay (Keras rho)."))
CLIP_NORM = _in("optimizer", flags.DEFINE_float("clip_norm", None, "Clip gradients to this global norm "
                                                "(unset or 0 = off)."))

_validator("learning_rate", lambda v: v is not None and v > 0, "--learning_rate must be > 0")
_validator("rmsprop_decay", lambda v: v is not None and 0 <= v < 1, "--rmsprop_decay must be in [0, 1)")
_validator("clip_norm", lambda v: v is None or v >= 0, "--clip_norm must be >= 0 (or unset)")

# ---------------------------------------------------------------------------- run

BATCH_SIZE = _in("run", flags.DEFINE_integer("batch_size", 128, "Training batch size (global, over all replicas)."))
EVAL_BATCH_SIZE = _in("run", flags.DEFINE_integer("eval_batch_size", None, "Batch size of validation and test "
                                                  "(unset = --batch_size)."))
STEPS = _in("run", flags.DEFINE_integer("steps", 1000, "Training steps (iterations)."))
EVAL_EVERY = _in("run", flags.DEFINE_integer("eval_every", 100, "Steps between evaluations (log line, curve point, "
                                             "validation, checkpoint); --steps must be a multiple."))
SEED = _in("run", flags.DEFINE_integer("seed", 0, "Seed of the data, the initial weights and the training noise."))
JIT_COMPILE = _in("run", flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                                           "Compile the train step with XLA; auto: on a GPU or under JAX."))
STRATEGY = _in("run", flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                                        "tf.distribute strategy (TensorFlow backend only)."))
TPU = _in("run", flags.DEFINE_string("tpu", "", "TPU address for --strategy=tpu (empty = local TPU)."))
STOP_WHEN = _in("run", flags.DEFINE_string("stop_when", None, "End the run early once METRIC OP THRESHOLD[:TIMES] "
                                          "holds at TIMES evaluations in a row, e.g. val_accuracy>=0.99:3 (METRIC: a "
                                          "curve.csv column; --steps stays the upper bound). Unset = run all --steps."))
OUTPUT_DIR = _in("run", flags.DEFINE_string("output_dir", None, "Folder of the run: flags, checkpoints, curve, "
                                            "results.json. Re-running the same command resumes the run."))

_validator("batch_size", lambda v: v is not None and v >= 1, "--batch_size must be >= 1")
_validator("eval_batch_size", lambda v: v is None or v >= 1, "--eval_batch_size must be >= 1 (or unset)")
_validator("steps", lambda v: v is not None and v >= 1, "--steps must be >= 1")
_validator("eval_every", lambda v: v is not None and v >= 1, "--eval_every must be >= 1")


def _stop_rule_ok(text):
    if text is not None:
        try:
            callbacks.StopRule.parse(text)
        except ValueError as e:
            raise flags.ValidationError(str(e)) from None
    return True


_validator("stop_when", _stop_rule_ok, "bad --stop_when")
flags.register_multi_flags_validator(
    ["steps", "eval_every"], lambda f: not (f["steps"] and f["eval_every"]) or f["steps"] % f["eval_every"] == 0,
    message="--steps must be a multiple of --eval_every")


def _strategy_ok(name):
    try:
        distribute.check_strategy(name)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    return True


_validator("strategy", _strategy_ok, "unusable --strategy")


def _writable_dir(path):
    if not path:
        raise flags.ValidationError("--output_dir is required")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise flags.ValidationError(f"--output_dir={path} is not a writable folder ({e.strerror or e})") from None
    return True


_validator("output_dir", _writable_dir, "--output_dir is not a writable folder")

# ---------------------------------------------------------------------------- synthetic tasks

T = _in("synthetic", flags.DEFINE_integer("T", 200, "Copying: delay between the symbols and the marker; "
                                          "recall: twice the number of key-value pairs."))
TEST_SIZE = _in("synthetic", flags.DEFINE_integer("test_size", 10_000, "Held-out sequences of the final test."))

_validator("T", lambda v: v is not None and v >= 1, "--T must be >= 1")
_validator("test_size", lambda v: v is not None and v >= 1, "--test_size must be >= 1")

# ---------------------------------------------------------------------------- official checkpoints

INIT_FROM_OFFICIAL = _in("official", flags.DEFINE_string(
    "init_from_official", None, "A TF1 checkpoint (prefix or folder) of this task's official script: load its "
    "recurrent cell and output layer into the model the model flags describe, then test it; no training."))
_validator("init_from_official", lambda v: v is None or os.path.exists(v + ".index") or os.path.isdir(v),
           "--init_from_official must be a TF1 checkpoint prefix (PREFIX.index exists) or its folder")


# ---------------------------------------------------------------------------- binaries

# The defaults as defined above; each parse starts from them, then applies the task's.
_BASE_DEFAULTS = {name: FLAGS[name].default for names in _GROUPS.values() for name in names}
# The same for every flag a TaskFlags has touched (binaries' own flags included), so that
# parsing for one binary never inherits another binary's defaults in the same process.
_ORIGINAL_DEFAULTS = dict(_BASE_DEFAULTS)


def _one_line(error):
    text = str(error).strip().replace("\n", " ")
    return text


class TaskFlags:
    """A task binary's view of the flags.

    Args:
      task: the task's name (results.json "task").
      groups: the shared groups the binary uses.
      defaults: {flag: default} of this task (the official script's settings).
      own: FlagHolders the binary defines itself.
      checks: callables run after parsing; a ValueError is a usage error.
    """

    def __init__(self, task, groups=ALL_GROUPS, defaults=None, own=(), checks=()):
        unknown = set(groups) - set(_GROUPS)
        if unknown:
            raise ValueError(f"unknown flag groups {sorted(unknown)}")
        self.task = task
        self.groups = tuple(groups)
        self.defaults = dict(defaults or {})
        self.own = tuple(h.name for h in own)
        self.checks = tuple(checks)
        for name in self.own + tuple(self.defaults):
            _ORIGINAL_DEFAULTS.setdefault(name, FLAGS[name].default)

    def names(self):
        """This binary's flags, in group order."""
        return [n for g in self.groups for n in _GROUPS[g]] + list(self.own)

    def _applicable(self, name):
        """False for a model argument that the chosen model does not take."""
        if name in models.MODEL_OPTIONS:
            return name in models.get(FLAGS.model).options
        return True

    def parse(self, argv):
        """Parse `argv` (argv[0] = program); UsageError with one line on bad input."""
        FLAGS.unparse_flags()  # parse from scratch, even in a process that parsed before
        for name, value in {**_ORIGINAL_DEFAULTS, **self.defaults}.items():
            if FLAGS[name].default != value:
                try:
                    FLAGS.set_default(name, value)
                except flags.IllegalFlagValueError:
                    pass  # set, then checked against flags not yet updated; parsing validates all
        try:
            rest = FLAGS(argv)
        except flags.Error as e:
            raise UsageError(_one_line(e)) from None
        if len(rest) > 1:
            raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
        mine = set(self.names())
        for name in _project_flags() - mine:  # e.g. --T given to a binary that has no T
            if FLAGS[name].present:
                raise UsageError(f"--{name} does not apply to the {self.task} task")
        for name in models.MODEL_OPTIONS:
            flag = FLAGS[name]
            if not self._applicable(name) and flag.value != flag.default:
                raise UsageError(f"--{name} does not apply to --model={FLAGS.model}")
        for check in self.checks:
            try:
                check()
            except ValueError as e:
                raise UsageError(_one_line(e)) from None
        return rest

    def values(self):
        """{flag: value} of everything that defines the run (inapplicable model args left out)."""
        return {n: FLAGS[n].value for n in self.names() if self._applicable(n)}

    def flagfile_text(self):
        """The resolved flags as a flagfile (`--flagfile=` repeats the run)."""
        lines = [f"# {self.task}: resolved flags of this run"]
        for name in self.names():
            if self._applicable(name) and FLAGS[name].value is not None:
                lines.append(FLAGS[name].serialize())
        return "\n".join(lines) + "\n"

    def model_options(self):
        """{argument: value} of the model arguments the chosen model takes."""
        return {n: FLAGS[n].value for n in models.MODEL_OPTIONS if self._applicable(n)}

    def model_label(self):
        """E.g. "rum lambda_=1 eta=0.1": the model and its arguments that differ from defaults."""
        changed = [f"{n}={FLAGS[n].value}" for n in models.MODEL_OPTIONS
                   if self._applicable(n) and FLAGS[n].value != _BASE_DEFAULTS[n]]
        return " ".join([FLAGS.model] + changed)

    def recurrent_layer(self, **layer_kwargs):
        """The `--model` recurrent layer with `--units` and the model's arguments."""
        return models.recurrent_layer(FLAGS.model, FLAGS.units, seed=FLAGS.seed, options=self.model_options(),
                                      **layer_kwargs)

    @property
    def eval_batch_size(self):
        return FLAGS.eval_batch_size or FLAGS.batch_size

    def run_config(self):
        """The harness settings of this run (`loop.RunConfig`)."""
        return loop.RunConfig(
            task=self.task,
            output_dir=FLAGS.output_dir,
            steps=FLAGS.steps,
            eval_every=FLAGS.eval_every,
            seed=FLAGS.seed,
            model=FLAGS.model,
            optimizer=FLAGS.optimizer,
            learning_rate=FLAGS.learning_rate,
            rmsprop_decay=FLAGS.rmsprop_decay,
            clip_norm=FLAGS.clip_norm,
            jit_compile=FLAGS.jit_compile,
            strategy=FLAGS.strategy,
            tpu=FLAGS.tpu,
            flags=self.values(),
            flagfile_text=self.flagfile_text(),
            resume_neutral=RESUME_NEUTRAL,
            stop_when=FLAGS.stop_when,
        )

    def from_official(self, task, config, symbol_order=None):
        """(task, config); with --init_from_official, the pair that tests the official
        checkpoint's weights instead of training (`official_tasks.evaluate_official`)."""
        if "official" not in self.groups or not FLAGS.init_from_official:
            return task, config
        return official_tasks.evaluate_official(task, config, FLAGS.init_from_official,
                                                official_tasks.GRAPHS[self.task], symbol_order)

    def run(self, main):
        """`app.run(main)` with this binary's flags; usage errors are one line, exit 2."""
        for name in self.names():  # --helpshort lists the flags this binary uses
            FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

        def parser(argv):
            try:
                return self.parse(argv)
            except UsageError as e:
                _fail(argv[0], e)

        def guarded_main(argv):
            try:
                main(argv)  # its return value is for callers in Python, not an exit status
            except loop.RunError as e:
                _fail(sys.argv[0], e)

        app.run(guarded_main, flags_parser=parser)


def _project_flags():
    """Names of the flags defined here and by the task binaries imported in this process."""
    names = set()
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module == __name__ or module.startswith("tasks."):
            names.update(f.name for f in module_flags)
    return names


def _fail(program, error):
    print(f"{os.path.basename(program)}: error: {error}", file=sys.stderr)
    sys.exit(2)
