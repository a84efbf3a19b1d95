"""The training harness: one `run(task, config)` for every task binary.

A task says what differs (model, data, loss, metrics, test); `run` does the rest the same way
everywhere: lock the run folder (`run_folder.RunFolder`), check what it holds, make the strategy,
seed, restore the newest checkpoint, `model.fit` in Keras epochs of `eval_every` steps with one
`callbacks.Bookkeeper`, test, write results.json, plot. docs/TRAINING.md describes the guarantees
(exact resume, divergence, full disk, interrupts).
"""

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from absl import logging

from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import checkpoints, distribute, optimizers, results, run_folder
from rum_tf.training import environment as environment_lib

# The run cannot start or go on as asked (another run in its --output_dir, divergence, a full
# disk...): binaries print its one-line message and exit with status 2; so they do for Interrupted.
RunError = run_folder.RunError
Interrupted = run_folder.Interrupted


@dataclasses.dataclass
class Task:
    """What a task binary hands to `run`.

    Attributes:
      name: the task's name.
      build_model: () -> uncompiled keras.Model, called in the strategy scope after seeding; name its
        layers, so checkpoints match across processes.
      train_data: start_step -> endless stream of (x, y) batches; batch k depends only on k and the
        seed, which is what makes resume exact.
      loss, metrics: for `compile` (metrics named: the names become log and CSV columns).
      valid_data: () -> finite dataset evaluated every `eval_every` steps.
      test_data: () -> finite dataset evaluated once at the end; or `test_fn`: (model) -> {metric:
        value}, when the test needs its own model (PTB's other batch size).
      keep_best: (monitor, "min" | "max"): end on the best evaluation's weights, not the last.
      references: {metric: {label: value}}: lines on that metric's plot, shown beside it in the log.
      task_results: extra fields of results.json["task_results"]; `finish_results`: (summary) ->
        more of them once the run has finished (PTB's characters per second).
      callbacks: extra Keras callbacks (a learning-rate schedule, state resets); `title`: the plot's.
      resume_neutral: more flag names that may differ when the run resumes.
      data_errors: exception types of bad or missing data; `run` makes them a one-line `RunError`.
    """

    name: str
    build_model: Callable[[], Any]
    train_data: Callable[[int], Any]
    loss: Any
    metrics: Sequence[Any] = ()
    valid_data: Callable[[], Any] | None = None
    test_data: Callable[[], Any] | None = None
    test_fn: Callable[[Any], Mapping[str, float]] | None = None
    keep_best: tuple | None = None
    references: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    task_results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    callbacks: Sequence[Any] = ()
    title: str = ""
    resume_neutral: Sequence[str] = ()
    data_errors: tuple = ()
    finish_results: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


# The flags that may change between the sessions of one run (`options` marks them for the binaries).
_RESUME_NEUTRAL = ("output_dir", "steps", "stop_when", "jit_compile", "strategy", "tpu", "checkpoint_every")


@dataclasses.dataclass
class RunConfig:
    """How to run: the harness' share of the flags (`flags.Config.run_config`).

    `flags` is everything that defines the run: it resumes only with the same values, except those in
    `resume_neutral`. With `stop_when`, `steps` is an upper bound (results.json "stopped" says why).
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
    clip_norm: float | None = None
    jit_compile: str = "auto"
    strategy: str = "default"
    tpu: str = ""
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flagfile_text: str = ""
    resume_neutral: Sequence[str] = _RESUME_NEUTRAL
    log_every_s: float = 60.0
    stop_when: callbacks_lib.StopRule | None = None  # end before `steps` once it holds (text: parsed here, once)
    checkpoint_every: int | None = None  # also checkpoint every N steps inside an interval

    def __post_init__(self):
        if isinstance(self.stop_when, str):
            self.stop_when = callbacks_lib.StopRule.parse(self.stop_when) if self.stop_when.strip() else None


def _tensorboard(log_dir):
    """[the TensorBoard callback], or [] with a warning where tensorboard or TensorFlow is not installed."""
    try:
        import tensorboard  # noqa: F401  (Keras' callback needs it to write events)
        import tensorflow  # noqa: F401  (and writes them with tf.summary, on every backend)
    except ImportError as e:
        logging.warning("no TensorBoard events: %s is not installed", e.name)
        return []
    return [keras.callbacks.TensorBoard(log_dir, write_graph=False)]


def _format_metrics(metrics):
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _stop_rule(config, task):
    """The run's `StopRule`, or None; RunError when it names a metric the run does not log."""
    rule = config.stop_when
    if rule is None:
        return None
    names = ["loss"] + [getattr(m, "name", str(m)) for m in task.metrics]
    logged = names + ([f"val_{n}" for n in names] if task.valid_data else [])
    if rule.metric not in logged:
        raise RunError(
            f"--stop_when={config.stop_when}: the {task.name} task logs no {rule.metric!r} "
            f"(it logs {', '.join(logged)})"
        )
    return rule


def _end_status(summary):
    """progress.json's (status, message) of a finished run."""
    stopped = summary.get("stopped")
    return ("stopped", stopped.get("reason")) if stopped else ("finished", None)


def run(task, config, on_progress=None):
    """Train (or resume, or just report) one run; returns its results dict.

    Args:
      task: the `Task`.
      config: the `RunConfig`.
      on_progress: (folder, record) -> None after every progress.json write (a multi-run parent's).

    Raises:
      RunError: the run cannot start or go on, in one line: the output folder holds a different
        run, one trained past --steps, one that diverged, or unreadable files; another live process
        is writing it (`run_folder.FolderBusy`); training diverged (`run_folder.Diverged`, after
        writing results.json with "status": "diverged"); the disk is full (`run_folder.DiskFull`).
      Interrupted: a KeyboardInterrupt (or SIGTERM in a binary) ended it; progress.json says so.
    """
    session_start = time.monotonic()
    if config.steps % config.eval_every:
        raise RunError(f"--steps={config.steps} is not a multiple of --eval_every={config.eval_every}")
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        raise RunError(f"--checkpoint_every={config.checkpoint_every} must be >= 1 (or unset)")
    if task.resume_neutral:
        config = dataclasses.replace(config, resume_neutral=tuple(config.resume_neutral) + tuple(task.resume_neutral))
    folder = run_folder.RunFolder(config.output_dir, distribute.worker_id_from_env(config.strategy))
    progress = results.Progress(folder.path, task.name, config.steps, on_write=on_progress)

    def body():
        try:
            return _run(task, config, session_start, folder, progress)
        except tuple(task.data_errors) as e:
            raise RunError(str(e).strip().replace("\n", " ")) from None
        except distribute.lost_worker_errors(config.strategy) as e:  # multi-worker: a worker died or hung
            raise distribute.lost_worker(e, config.output_dir) from None

    def record_end(status, message):
        # A run refused before it took the folder over leaves the folder's progress.json to the run there.
        if progress.accepted or not os.path.exists(folder.file(results.PROGRESS_FILE)):
            progress.write(status, message)

    return folder.guarded(body, record_end)


def _run(task, config, session_start, folder, progress):
    finished, latest = folder.holds(config)
    progress.accepted = True
    if finished is not None and run_folder.finished_as_asked(finished, config):
        if not os.path.exists(folder.file(results.CURVE_PNG)):  # killed between results.json and the plot
            results.plot_run(folder.path, task.references, task.title)
        logging.info(
            "%s: already finished (%s steps); results in %s: test %s",
            task.name,
            finished["steps"],
            folder.file(results.RESULTS_FILE),
            _format_metrics(finished.get("metrics", {}).get("test", {})),
        )
        progress.update(finished.get("steps", 0))
        progress.write(*_end_status(finished))
        return finished
    if folder.chief:
        folder.start(config.flagfile_text, finished, latest)

    # Fresh layer names (checkpoints name the layers) and one seed for everything.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    distribute.check_same_start(strategy, latest[0] if latest else 0, config.output_dir)  # multi-worker: one step
    jit_compile = distribute.resolve_jit_compile(config.jit_compile)
    with strategy.scope():
        model = task.build_model()
        optimizer = optimizers.make_optimizer(
            config.optimizer, config.learning_rate, config.rmsprop_decay, config.clip_norm
        )
        metrics = distribute.compile_metrics(task.metrics, strategy)  # multi-worker: made again in the scope
        model.compile(optimizer=optimizer, loss=task.loss, metrics=metrics, jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)
        saved = folder.restore(model) if latest is not None else {"step": 0}
    state = callbacks_lib.RunState.restored(saved, session_start)

    parameters = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    replicas = strategy.num_replicas_in_sync
    where = f"strategy {config.strategy} ({replicas} replica{'' if replicas == 1 else 's'}), jit_compile {jit_compile}"
    logging.info(
        f"{task.name} | model {config.model}, {parameters:,} trainable parameters | backend "
        f"{keras.backend.backend()}, {where} | {folder.path}"
    )
    curve_path = folder.file(results.CURVE_CSV)
    results.truncate_curve(curve_path, state.step)  # rows written after the checkpoint are redone
    stop_rule = _stop_rule(config, task)
    rows = results.read_curve(curve_path) if stop_rule else []
    # A resumed run keeps its streak; one killed after meeting the rule does not train on.
    stopped = stop_rule.met(rows) if stop_rule else None
    progress.update(state.step)
    progress.write("running")
    monitor, mode = task.keep_best if task.keep_best else (None, "min")
    bookkeeper = callbacks_lib.Bookkeeper(
        state,
        config,
        curve_path=curve_path,
        checkpoint_dir=folder.checkpoints,
        progress=progress,
        references=task.references,
        monitor=monitor,
        mode=mode,
        stop_rule=stop_rule,
        streak=stop_rule.streak([r.get(stop_rule.metric) for r in rows]) if stop_rule else (),
        save=folder.chief,
    )
    environment = environment_lib.describe(config.strategy, strategy.num_replicas_in_sync, jit_compile)

    def summary(status, steps, metrics, **extra):
        return results.summary(
            task=task.name,
            status=status,
            flags=config.flags,
            model=config.model,
            parameters=parameters,
            steps=steps,
            wall_time_s=state.wall_time_now(),
            train_time_s=state.train_time_s,
            environment=environment,
            metrics=metrics,
            task_results=task.task_results,
            **extra,
        )

    if state.step < config.steps and stopped is None:
        logging.info(
            "%s from step %s to %s", "resuming" if state.step else "training", f"{state.step:,}", f"{config.steps:,}"
        )
        try:
            tensorboard = _tensorboard(folder.file(results.TENSORBOARD_DIR))
            _fit(model, task, config, state, saved, [*tensorboard, *task.callbacks, bookkeeper])
        except run_folder.Diverged as e:
            if folder.chief:  # the last good evaluation's metrics; its checkpoint is the newest
                metrics = results.curve_metrics(results.read_curve(curve_path))
                where = {"step": e.step, "reason": e.reason}
                results.write_results(config.output_dir, summary("diverged", e.step, metrics, diverged=where))
            raise
        stopped = bookkeeper.stopped
    steps_done = stopped["step"] if stopped else config.steps
    best = state.best
    if best is not None:
        logging.info("restoring the best weights: step %s, %s %.4g", best["step"], monitor, best["value"])
        with strategy.scope():
            checkpoints.restore(model, checkpoints.checkpoint_path(folder.checkpoints, best["step"]))

    metrics = results.curve_metrics(results.read_curve(curve_path))
    if task.test_fn is not None or task.test_data is not None:
        logging.info("testing (training took %s)", callbacks_lib.format_duration(state.train_time_s))
        if task.test_fn is not None:
            test = task.test_fn(model)
        else:
            test = model.evaluate(task.test_data(), return_dict=True, verbose=0)
        metrics["test"] = {k: float(v) for k, v in test.items()}
        logging.info("test: %s", _format_metrics(metrics["test"]))

    checkpoints.ensure_space(model, folder.path)
    with run_folder.atomic_path(folder.file(results.MODEL_FILE), suffix=".keras") as tmp:
        model.save(tmp)
    final = summary(
        "finished",
        steps_done,
        metrics,
        best={"monitor": monitor, "mode": mode, **best} if best else None,
        stopped=stopped,
    )
    if task.finish_results is not None:
        final["task_results"].update(task.finish_results(final))
    if folder.chief:
        results.write_results(config.output_dir, final)  # before any plot: a plot that fails costs nothing else
        final = results.read_results(config.output_dir)  # exactly what the file says, as a re-run returns
    progress.update(steps_done, progress.metrics, progress.steps_per_s)
    progress.write(*_end_status(final))
    results.plot_run(folder.path, task.references, task.title)
    logging.info(
        "%s finished: %s steps in %s (%.3g steps/s); results in %s",
        task.name,
        f"{steps_done:,}",
        callbacks_lib.format_duration(final["wall_time_s"]),
        final["steps_per_s"] or 0,
        os.path.join(config.output_dir, results.RESULTS_FILE),
    )
    return final


def _fit(model, task, config, state, saved, fit_callbacks):
    """`model.fit` from `state.step` to `config.steps` in Keras epochs of `eval_every` steps.

    From a checkpoint at step s inside interval e, a first `fit` finishes interval e (s mod
    eval_every steps fewer, reading the stream from s), then the usual `fit` runs the intervals
    after it; the `Bookkeeper` (the last callback) restores the checkpoint's variables and metric
    sums at the start of interval e, after the task's callbacks have begun it.
    """
    eval_every, step = config.eval_every, state.step
    epoch, done = divmod(step, eval_every)
    kwargs = dict(
        callbacks=fit_callbacks,
        validation_data=task.valid_data() if task.valid_data else None,
        shuffle=False,  # the stream's order is part of the run
        verbose=0,
    )
    if done:
        fit_callbacks[-1].resume_inside(model, saved, next(iter(task.train_data(step))))
        first = dict(epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=eval_every - done)
        model.fit(task.train_data(step), **first, **kwargs)
        step = (epoch + 1) * eval_every
        if model.stop_training or step >= config.steps:
            return
    model.fit(
        task.train_data(step),
        epochs=config.steps // eval_every,
        initial_epoch=step // eval_every,
        steps_per_epoch=eval_every,
        **kwargs,
    )
