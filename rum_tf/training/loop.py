"""The training harness: one `run(task, config)` for every task binary.

A task says what differs (its model, data, loss, metrics, test); the harness does the
rest the same way everywhere: distribution strategy, XLA, seeding, resume from the
last checkpoint, `model.fit` with TensorBoard / CSV / progress / checkpoint callbacks,
the final test, results.json, the curve plot (files listed in `results`).

Steps and evaluations: `fit` runs `steps / eval_every` Keras epochs of `eval_every`
steps; after each one the task's validation set (if any) is evaluated, a log line and a
curve row are written and a checkpoint is saved. A run resumes from its newest
checkpoint: weights, optimizer and random-generator state, the clocks, the best value,
and the data stream at the same step (`Task.train_data(start_step)`), so on CPU the
resumed run ends with the numbers of an uninterrupted one. With `checkpoint_every`,
checkpoints are also saved inside the intervals, and a run resumes from those as
exactly (`midinterval`).
"""

import dataclasses
import datetime
import logging as std_logging
import os
import platform
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import keras
import numpy as np
from absl import logging

import rum_tf
from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import checkpoints, distribute, midinterval, optimizers, results

# curve.csv columns that are bookkeeping, not metrics.
_BOOKKEEPING = ("epoch", "step", "train_time_s", "wall_time_s", "learning_rate")


class RunError(Exception):
    """The run cannot start as asked (e.g. its --output_dir holds another run)."""


@dataclasses.dataclass
class Task:
    """What a task binary hands to `run`.

    Attributes:
      name: the task's name.
      build_model: () -> uncompiled keras.Model; called inside the strategy scope
        after seeding. Name its layers, so checkpoints match across processes.
      train_data: start_step -> endless tf.data.Dataset of (x, y) training batches;
        batch k must depend only on k (and the seed), which is what makes resume exact.
      loss: Keras loss.
      metrics: Keras metrics (named: their names become log and CSV columns).
      valid_data: () -> finite dataset evaluated after every `eval_every` steps.
      test_data: () -> finite dataset evaluated once at the end.
      test_fn: (model) -> {metric: value}; replaces `test_data` when the test needs its
        own model (e.g. another batch size for a stateful RNN).
      keep_best: (monitor, "min" | "max"): end on the weights of the best evaluation
        of `monitor` (e.g. ("val_loss", "min")) instead of the last ones.
      references: {metric: {label: value}}: lines drawn on that metric's plot and
        shown beside it in the log (e.g. the copying memoryless baseline).
      task_results: extra JSON fields for results.json["task_results"].
      callbacks: extra Keras callbacks (e.g. a learning-rate schedule, state resets).
      title: title of the curve plot.
      resume_neutral: more flag names that may differ when the run resumes (added to
        `RunConfig.resume_neutral`).
      data_errors: exception types that the task's callables raise for bad or missing
        data; `run` turns them into a one-line `RunError`.
      finish_results: (summary) -> {field: value} added to results.json["task_results"]
        once the run has finished (e.g. PTB's characters per second of training).
    """

    name: str
    build_model: Callable[[], Any]
    train_data: Callable[[int], Any]
    loss: Any
    metrics: Sequence[Any] = ()
    valid_data: Optional[Callable[[], Any]] = None
    test_data: Optional[Callable[[], Any]] = None
    test_fn: Optional[Callable[[Any], Mapping[str, float]]] = None
    keep_best: Optional[tuple] = None
    references: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    task_results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    callbacks: Sequence[Any] = ()
    title: str = ""
    resume_neutral: Sequence[str] = ()
    data_errors: tuple = ()
    finish_results: Optional[Callable[[Mapping[str, Any]], Mapping[str, Any]]] = None


@dataclasses.dataclass
class RunConfig:
    """How to run: the harness' share of the flags (see `rum_tf.training.flags`).

    `flags` is everything that defines the run; a run resumes only with the same
    values, except those in `resume_neutral` (e.g. more --steps, another strategy).
    With `stop_when`, `steps` is an upper bound: the run ends at the first evaluation
    where the rule has held often enough in a row (results.json "stopped" says so).
    """

    task: str
    output_dir: str
    steps: int
    eval_every: int
    seed: int = 0
    model: str = ""
    optimizer: str = "rmsprop"
    learning_rate: float = 1e-3
    rmsprop_decay: float = 0.9
    clip_norm: Optional[float] = None
    jit_compile: str = "auto"
    strategy: str = "default"
    tpu: str = ""
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flagfile_text: str = ""
    resume_neutral: Sequence[str] = ("output_dir", "steps", "stop_when", "jit_compile", "strategy", "tpu",
                                     "checkpoint_every")
    log_every_s: float = 60.0
    stop_when: Optional[str] = None  # a `callbacks.StopRule`: end before `steps` once it holds
    checkpoint_every: Optional[int] = None  # also checkpoint every N steps inside an interval (`midinterval`)


def _versions():
    found = {"rum_tf": rum_tf.__version__, "keras": keras.__version__}
    for name in ("tensorflow", "jax"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def _devices():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices()
                if d.device_type in ("CPU", "GPU", "TPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    return [backend]


def _machine():
    """Where the run trained: CPU model, the cores it could use, the OS and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores_used": cores, "os": platform.platform(terse=True),
            "python": platform.python_version()}


def _flag_differences(saved, current, neutral):
    diffs = []
    for name in sorted(set(saved) | set(current)):
        if name in neutral:
            continue
        if saved.get(name) != current.get(name):
            diffs.append(f"--{name}={saved.get(name)} there, {current.get(name)} here")
    return diffs


def _check_same_run(saved_flags, config, where):
    diffs = _flag_differences(saved_flags or {}, dict(config.flags), set(config.resume_neutral))
    if diffs:
        raise RunError(
            f"--output_dir={config.output_dir} holds a run with other flags ({'; '.join(diffs[:3])}"
            f"{'; ...' if len(diffs) > 3 else ''}, from its {where}): repeat its flags to resume it, "
            "or choose another --output_dir")


class FileLog:
    """Copies absl log lines to output_dir/log.txt while a run is active."""

    def __init__(self, path):
        self.handler = std_logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.handler.setLevel(std_logging.INFO)

    def __enter__(self):
        logger = logging.get_absl_logger()
        self.level = logger.level
        if not logger.isEnabledFor(std_logging.INFO):  # absl logs warnings only until flags are parsed
            logger.setLevel(std_logging.INFO)
        logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        logger = logging.get_absl_logger()
        logger.removeHandler(self.handler)
        logger.setLevel(self.level)
        self.handler.close()


def _split_metrics(row):
    """A curve row -> ({train metric: value}, {validation metric: value})."""
    train = {k: v for k, v in row.items() if k not in _BOOKKEEPING and not k.startswith("val_")}
    valid = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return train, valid


def _plot_panels(rows, references):
    """One panel per metric: its training and validation columns, its reference lines."""
    names = []
    for row in rows:
        for key in row:
            base = key[4:] if key.startswith("val_") else key
            if base not in _BOOKKEEPING and base not in names:
                names.append(base)
    names.sort(key=lambda n: (n != "loss", n))
    return [(name, [name, f"val_{name}"], dict(references.get(name, {}))) for name in names]


def _tensorboard(log_dir):
    """[the TensorBoard callback], or [] with a warning where tensorboard is not installed."""
    try:
        import tensorboard  # noqa: F401  (Keras' callback needs it to write events)
    except ImportError:
        logging.warning("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir, write_graph=False)]


def _format_metrics(metrics):
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _already_finished(finished, config):
    """Whether a finished run is what `config` asks for: trained to --steps, or stopped by the same rule.

    A run that another --stop_when (or none) ended early continues from its last checkpoint, as a
    larger --steps continues a finished run.
    """
    stopped = finished.get("stopped")
    if stopped:
        try:
            rule = str(callbacks_lib.StopRule.parse(config.stop_when)) if config.stop_when else None
        except ValueError:
            rule = None  # _stop_rule reports it
        return stopped.get("rule") == rule or (rule is None and finished.get("steps") == config.steps)
    return finished.get("steps") == config.steps


def _stop_rule(config, task):
    """The run's `StopRule`, or None; RunError when it names a metric the run does not log."""
    if not config.stop_when:
        return None
    try:
        rule = callbacks_lib.StopRule.parse(config.stop_when)
    except ValueError as e:
        raise RunError(str(e)) from None
    names = ["loss"] + [getattr(m, "name", str(m)) for m in task.metrics]
    logged = names + ([f"val_{n}" for n in names] if task.valid_data else [])
    if rule.metric not in logged:
        raise RunError(f"--stop_when={config.stop_when}: the {task.name} task logs no {rule.metric!r} "
                       f"(it logs {', '.join(logged)})")
    return rule


def run(task, config):
    """Train (or resume, or just report) one run; returns its results dict.

    Raises:
      RunError: the output folder holds a different run, or one trained past --steps.
    """
    session_start = time.monotonic()
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    if config.steps % config.eval_every:
        raise RunError(f"--steps={config.steps} is not a multiple of --eval_every={config.eval_every}")
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        raise RunError(f"--checkpoint_every={config.checkpoint_every} must be >= 1 (or unset)")
    if task.resume_neutral:
        config = dataclasses.replace(config, resume_neutral=tuple(config.resume_neutral) + tuple(task.resume_neutral))
    with FileLog(os.path.join(out, results.LOG_FILE)):
        try:
            return _run(task, config, session_start)
        except tuple(task.data_errors) as e:
            raise RunError(str(e).strip().replace("\n", " ")) from None


def _run(task, config, session_start):
    out = config.output_dir
    ckpt_dir = os.path.join(out, results.CHECKPOINT_DIR)
    finished = results.read_results(out)
    if finished is not None:
        _check_same_run(finished.get("flags"), config, "results.json")
        if _already_finished(finished, config):
            logging.info("%s: already finished (%s steps); results in %s: test %s", task.name, finished["steps"],
                         os.path.join(out, results.RESULTS_FILE),
                         _format_metrics(finished.get("metrics", {}).get("test", {})))
            return finished
        if config.steps < finished.get("steps", 0):
            raise RunError(f"--output_dir={out} holds a run finished at {finished['steps']} steps, "
                           f"more than --steps={config.steps}")

    saved = checkpoints.list_checkpoints(ckpt_dir)
    resume_state = None
    if saved:
        resume_state = checkpoints.read_state(saved[0][1])
        _check_same_run(resume_state.get("flags"), config, "checkpoint")
        if resume_state["step"] > config.steps:
            raise RunError(f"--output_dir={out} holds a run already trained {resume_state['step']} steps, "
                           f"more than --steps={config.steps}")
        if resume_state["step"] % config.eval_every and not midinterval.is_mid_interval(resume_state):
            raise RunError(f"--output_dir={out} holds a checkpoint at step {resume_state['step']}, "
                           f"not a multiple of --eval_every={config.eval_every}")
    if finished is not None:
        # A finished run continues (more --steps, another --stop_when): until it finishes again its
        # old results.json would describe a run that no longer exists.
        logging.info("continuing the run that finished at step %s; its results.json is rewritten at the end",
                     f"{finished.get('steps', 0):,}")
        os.remove(os.path.join(out, results.RESULTS_FILE))
    if not saved:  # a new run, or one killed before its first checkpoint: start clean
        for leftover in (results.CURVE_CSV, results.TENSORBOARD_DIR, results.CHECKPOINT_DIR):
            path = os.path.join(out, leftover)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    results.atomic_write_text(os.path.join(out, results.FLAGS_FILE), config.flagfile_text)

    # Fresh layer names (checkpoints name the layers) and one seed for everything.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    worker = distribute.worker_id(strategy)
    if worker is not None:  # only the chief writes the run's outputs
        out = os.path.join(out, "workers", worker)
        ckpt_dir = os.path.join(out, results.CHECKPOINT_DIR)
        os.makedirs(out, exist_ok=True)
    jit_compile = distribute.resolve_jit_compile(config.jit_compile)
    with strategy.scope():
        model = task.build_model()
        optimizer = optimizers.make_optimizer(config.optimizer, config.learning_rate, config.rmsprop_decay,
                                              config.clip_norm)
        model.compile(optimizer=optimizer, loss=task.loss, metrics=list(task.metrics), jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)
        step, best, state = 0, None, {}
        if resume_state is not None:
            state = checkpoints.restore(model, saved[0][1])
            step, best = state["step"], state.get("best")

    parameters = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    logging.info("%s | model %s, %s trainable parameters | backend %s, strategy %s (%d replica%s), jit_compile %s | %s",
                 task.name, config.model, f"{parameters:,}", keras.backend.backend(), config.strategy,
                 strategy.num_replicas_in_sync, "" if strategy.num_replicas_in_sync == 1 else "s", jit_compile, out)
    curve_path = os.path.join(out, results.CURVE_CSV)
    results.truncate_curve(curve_path, step)  # rows written after the checkpoint are redone
    stop_rule, stopped = _stop_rule(config, task), None
    if stop_rule is not None:
        # Rebuilt from the curve, so a resumed run keeps its streak (and one killed after
        # meeting the rule does not train on).
        stopped = stop_rule.met(results.read_curve(curve_path))

    clock = callbacks_lib.StepClock(config.eval_every, state.get("train_time_s", 0.0), state.get("wall_time_s", 0.0),
                                    session_start)
    monitor, mode = task.keep_best if task.keep_best else (None, "min")
    checkpointer = callbacks_lib.Checkpointer(ckpt_dir, clock, monitor, mode, best,
                                              extra_state={"flags": dict(config.flags)})
    stopper = callbacks_lib.StopWhen(stop_rule, clock, results.read_curve(curve_path)) if stop_rule else None
    run_callbacks = [
        *_tensorboard(os.path.join(out, results.TENSORBOARD_DIR)),
        *task.callbacks,
        clock,  # adds step and times to the logs of the callbacks after it
        callbacks_lib.ProgressLogger(clock, config.steps, task.references, config.log_every_s),
        callbacks_lib.CurveLogger(curve_path),
        *([stopper] if stopper else []),
        checkpointer,  # last: everything before it has seen this evaluation
    ]
    if step < config.steps and stopped is None:
        logging.info("%s from step %s to %s", "resuming" if step else "training", f"{step:,}", f"{config.steps:,}")
        midinterval.fit(  # model.fit, resumed inside an interval and checkpointing inside them if asked
            model,
            task.train_data,
            step=step,
            steps=config.steps,
            eval_every=config.eval_every,
            checkpoint_every=config.checkpoint_every,
            state=state,
            directory=ckpt_dir,
            clock=clock,
            checkpointer=checkpointer,
            callbacks=run_callbacks,
            validation_data=task.valid_data() if task.valid_data else None,
            shuffle=False,  # the stream's order is part of the run
            verbose=0,
        )
        stopped = stopper.stopped if stopper else None
    steps_done = stopped["step"] if stopped else config.steps
    best = checkpointer.best
    if best is not None:
        logging.info("restoring the best weights: step %s, %s %.4g", best["step"], monitor, best["value"])
        with strategy.scope():
            checkpoints.restore(model, checkpoints.checkpoint_path(ckpt_dir, best["step"]))

    metrics = {}
    rows = results.read_curve(curve_path)
    if rows:
        train, valid = _split_metrics(rows[-1])
        metrics["train"] = train
        if valid:
            metrics["valid"] = valid
    if task.test_fn is not None or task.test_data is not None:
        logging.info("testing (training took %s)", callbacks_lib.format_duration(clock.train_time_s))
    if task.test_fn is not None:
        metrics["test"] = {k: float(v) for k, v in task.test_fn(model).items()}
    elif task.test_data is not None:
        test = model.evaluate(task.test_data(), return_dict=True, verbose=0)
        metrics["test"] = {k: float(v) for k, v in test.items()}
    if "test" in metrics:
        logging.info("test: %s", _format_metrics(metrics["test"]))

    model_path = os.path.join(out, results.MODEL_FILE)
    tmp_model = os.path.join(out, f"model.tmp-{os.getpid()}.keras")
    model.save(tmp_model)
    os.replace(tmp_model, model_path)

    train_time = clock.train_time_s
    summary = {
        "task": task.name,
        "status": "finished",
        "flags": dict(config.flags),
        "model": config.model,
        "parameters": parameters,
        "steps": steps_done,
        "wall_time_s": round(clock.wall_time_s(), 3),
        "train_time_s": round(train_time, 3),
        "steps_per_s": round(steps_done / train_time, 3) if train_time > 0 else None,
        "backend": keras.backend.backend(),
        "strategy": config.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "jit_compile": jit_compile,
        "devices": _devices(),
        "machine": _machine(),
        "versions": _versions(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics,
        "task_results": dict(task.task_results),
    }
    if best is not None:
        summary["best"] = {"monitor": monitor, "mode": mode, **best}
    if stopped is not None:
        summary["stopped"] = stopped
    if task.finish_results is not None:
        summary["task_results"].update(task.finish_results(summary))
    results.plot_curve(curve_path, os.path.join(out, results.CURVE_PNG), _plot_panels(rows, task.references),
                       title=task.title)
    if worker is None:
        results.write_results(out, summary)
        summary = results.read_results(out)  # exactly what the file says, as a re-run returns
    logging.info("%s finished: %s steps in %s (%.3g steps/s); results in %s", task.name, f"{steps_done:,}",
                 callbacks_lib.format_duration(summary["wall_time_s"]), summary["steps_per_s"] or 0,
                 os.path.join(out, results.RESULTS_FILE))
    return summary
