"""The training harness: one `run(task, config)` for every task binary.

A task says what differs (its model, data, loss, metrics, test); the harness does the
rest the same way everywhere: distribution strategy, XLA, seeding, resume from the
last checkpoint, `model.fit` with TensorBoard / CSV / progress / checkpoint callbacks,
the final test, results.json, the curve plot (files listed in `results`).

The run folder is guarded (`run_folder`): a run holds its lock from before it reads or
changes anything there until it ends, NaN or infinity in training ends it as "diverged",
and a full disk ends it with one line while the last good checkpoint stays intact.
progress.json says where the run is at every evaluation.

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
import gc
import logging as std_logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from absl import logging

import rum_tf
from rum_tf.training import callbacks as callbacks_lib
from rum_tf.training import checkpoints, distribute, midinterval, optimizers, results, run_folder

# The run cannot start or go on as asked (another run in its --output_dir, divergence, a full
# disk...): binaries print its one-line message and exit with status 2.
RunError = run_folder.RunError


class Interrupted(KeyboardInterrupt):
    """SIGINT (or SIGTERM, which the binaries turn into it) ended the run; the message is one line for the
    user. A KeyboardInterrupt still, so that code waiting for one sees it."""


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
    clip_norm: float | None = None
    jit_compile: str = "auto"
    strategy: str = "default"
    tpu: str = ""
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flagfile_text: str = ""
    resume_neutral: Sequence[str] = (
        "output_dir",
        "steps",
        "stop_when",
        "jit_compile",
        "strategy",
        "tpu",
        "checkpoint_every",
    )
    log_every_s: float = 60.0
    stop_when: callbacks_lib.StopRule | None = None  # end before `steps` once it holds (text: parsed here, once)
    checkpoint_every: int | None = None  # also checkpoint every N steps inside an interval (`midinterval`)

    def __post_init__(self):
        if isinstance(self.stop_when, str):
            self.stop_when = callbacks_lib.StopRule.parse(self.stop_when) if self.stop_when.strip() else None


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

        return [
            d.name.replace("/physical_device:", "")
            for d in tf.config.list_physical_devices()
            if d.device_type in ("CPU", "GPU", "TPU")
        ]
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
    return {"cpu": cpu, "cores_used": cores, "os": platform.platform(terse=True), "python": platform.python_version()}


def _code():
    """The code that runs: the git commit of rum_tf's checkout and whether its tree was clean
    (None where rum_tf is not in a git checkout, e.g. installed from a wheel)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(rum_tf.__file__)))

    def git(*args):
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        clean = git("status", "--porcelain") == ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "clean": clean}


# Read when the harness is imported: the code of this process, not of a tree changed later.
CODE = _code()


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
            "or choose another --output_dir"
        )


class _QuietFileHandler(std_logging.FileHandler):
    """A log file that stops quietly when it cannot be written (a full disk): the run reports that itself,
    in one line, instead of a "--- Logging error ---" traceback per log line."""

    def handleError(self, record):
        self.failed = True


class FileLog:
    """Copies absl log lines to output_dir/log.txt while a run is active."""

    def __init__(self, path):
        self.handler = _QuietFileHandler(path, encoding="utf-8")
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
    train = {k: v for k, v in row.items() if k not in results.BOOKKEEPING and not k.startswith("val_")}
    valid = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return train, valid


def _plot(curve_path, folder, task):
    rows = results.read_curve(curve_path)
    panels = _plot_panels(rows, task.references)
    results.try_plot(results.plot_curve, curve_path, os.path.join(folder, results.CURVE_PNG), panels, title=task.title)


def _plot_panels(rows, references):
    """One panel per metric: its training and validation columns, its reference lines."""
    names = []
    for row in rows:
        for key in row:
            base = key[4:] if key.startswith("val_") else key
            if base not in results.BOOKKEEPING and base not in names:
                names.append(base)
    names.sort(key=lambda n: (n != "loss", n))
    return [(name, [name, f"val_{name}"], dict(references.get(name, {}))) for name in names]


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


def _already_finished(finished, config):
    """Whether a finished run is what `config` asks for: trained to --steps, or stopped by the same rule.

    A run that another --stop_when (or none) ended early continues from its last checkpoint, as a
    larger --steps continues a finished run.
    """
    stopped = finished.get("stopped")
    if stopped:
        rule = str(config.stop_when) if config.stop_when else None
        return stopped.get("rule") == rule or (rule is None and finished.get("steps") == config.steps)
    return finished.get("steps") == config.steps


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


def run(task, config):
    """Train (or resume, or just report) one run; returns its results dict.

    Raises:
      RunError: the run cannot start or go on, in one line: the output folder holds a different
        run, one trained past --steps, or one that diverged; another live process is writing it
        (`run_folder.FolderBusy`); training diverged (`run_folder.Diverged`, after writing
        results.json with "status": "diverged"); the disk is full (`run_folder.DiskFull`).
    """
    session_start = time.monotonic()
    if config.steps % config.eval_every:
        raise RunError(f"--steps={config.steps} is not a multiple of --eval_every={config.eval_every}")
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        raise RunError(f"--checkpoint_every={config.checkpoint_every} must be >= 1 (or unset)")
    if task.resume_neutral:
        config = dataclasses.replace(config, resume_neutral=tuple(config.resume_neutral) + tuple(task.resume_neutral))
    worker = distribute.worker_id_from_env(config.strategy)
    folder = config.output_dir if worker is None else os.path.join(config.output_dir, "workers", worker)
    progress = callbacks_lib.ProgressFile(folder, task.name, config.steps, clock=None)

    def body():
        try:
            return _run(task, config, session_start, worker, folder, progress)
        except tuple(task.data_errors) as e:
            raise RunError(str(e).strip().replace("\n", " ")) from None
        except distribute.lost_worker_errors(config.strategy) as e:  # multi-worker: a worker died or hung
            raise distribute.lost_worker(e, config.output_dir) from None

    def record_end(status, message):
        # A run refused before it took the folder over leaves the folder's progress.json to the run there.
        if progress.accepted or not os.path.exists(os.path.join(folder, results.PROGRESS_FILE)):
            progress.write(status, message)

    return run_guarded(folder, record_end, body)


def _detached(error):
    """`error` without its traceback and context: raised again, it no longer keeps the failed frames (the
    training's data iterators, open event writers) alive until the interpreter exits, where TensorFlow
    would finalize them with noise on stderr."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def run_guarded(folder, write_progress, body):
    """`body()` holding `folder`'s lock (`run_folder.FolderLock`), with the log copied to its log.txt.

    The lock is taken before anything in the folder is read, deleted or written. A failure of
    `body` is recorded by `write_progress(status, message)` ("diverged" or "failed"); a full disk
    becomes one `run_folder.DiskFull` line naming the folder and its last good checkpoint.
    """
    try:
        lock = run_folder.FolderLock(folder).acquire()
    except run_folder.DiskFull:
        lock = None  # raised below, with the folder's last checkpoint, outside the handler
    if lock is None:
        raise _disk_full(folder, None)
    try:
        results.remove_temporary_files(folder)  # what killed writers left; nobody else writes here now
        with FileLog(os.path.join(folder, results.LOG_FILE)):
            lock.report_takeover()
            try:
                return body()
            except run_folder.Diverged as e:
                _last_progress(write_progress, "diverged", e)
                failure = _detached(e)
            except RunError as e:
                _last_progress(write_progress, "failed", e)
                failure = _detached(e)
            except KeyboardInterrupt as e:
                saved = checkpoints.list_checkpoints(os.path.join(folder, results.CHECKPOINT_DIR))
                how = f" by {e.args[0]}" if e.args and str(e.args[0]).startswith("SIG") else ""
                kept = f"the last checkpoint (step {saved[0][0]:,}) is kept; " if saved else ""
                failure = Interrupted(f"interrupted{how}: {kept}run the same command again to resume")
                _last_progress(write_progress, "interrupted", failure)
            except BaseException as e:
                if not run_folder.is_disk_full(e):
                    _last_progress(write_progress, "failed", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                    raise
                failure = _detached(_disk_full(folder, e))
                _last_progress(write_progress, "failed", failure)
            gc.collect()  # the failed frames hold reference cycles
            raise failure  # outside the except blocks: see _detached
    finally:
        lock.release()


def _disk_full(folder, error):
    """The `run_folder.DiskFull` of `folder`, naming its newest complete checkpoint."""
    saved = checkpoints.list_checkpoints(os.path.join(folder, results.CHECKPOINT_DIR))
    return run_folder.disk_full_error(folder, error, saved[0][0] if saved else None)


def _last_progress(write_progress, status, message):
    try:
        write_progress(status, str(message).splitlines()[0] if str(message) else status)
    except OSError:
        pass  # a full disk: the run's error says so


def _environment(config, strategy, jit_compile):
    """Where the run trained (results.json fields)."""
    return {
        "backend": keras.backend.backend(),
        "strategy": config.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "jit_compile": jit_compile,
        "devices": _devices(),
        "machine": _machine(),
        "versions": _versions(),
        "code": CODE,
    }


def _curve_metrics(rows):
    """results.json "metrics" from the curve: the last row's training and validation metrics."""
    metrics = {}
    if rows:
        train, valid = _split_metrics(rows[-1])
        metrics["train"] = train
        if valid:
            metrics["valid"] = valid
    return metrics


def _end_status(summary):
    """progress.json's (status, message) of a finished run."""
    stopped = summary.get("stopped")
    return ("stopped", stopped.get("reason")) if stopped else ("finished", None)


def _check_folder(config, out, resume_dir):
    """What `out` holds: (results.json of a finished run or None, the newest checkpoint's (step, path,
    state) or None, not looked for when the run is already finished); RunError when it cannot be
    this run, or continued to `config`."""
    try:
        finished = results.read_results(out)
    except ValueError as e:  # a torn or edited file (JSONDecodeError, UnicodeDecodeError)
        raise RunError(
            f"--output_dir={out}: its results.json cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "move it away to test the run again from its last checkpoint"
        ) from None
    if finished is not None:
        _check_same_run(finished.get("flags"), config, "results.json")
        if finished.get("status") == "diverged":
            where = finished.get("diverged", {})
            raise run_folder.Diverged(
                f"--output_dir={out} holds a run that diverged at step {where.get('step', 0):,} "
                f"({where.get('reason', 'NaN or infinity')}); it cannot be resumed: change its flags (e.g. a "
                "lower --learning_rate) and use another --output_dir",
                where.get("step"),
                where.get("reason"),
            )
        if _already_finished(finished, config):
            return finished, None
        if config.steps < finished.get("steps", 0):
            raise RunError(
                f"--output_dir={out} holds a run finished at {finished['steps']} steps, "
                f"more than --steps={config.steps}"
            )
    try:
        latest = checkpoints.latest_state(resume_dir)
    except checkpoints.Unreadable as e:
        raise RunError(f"--output_dir={out}: {e}; nothing was changed: move the folder away to start over") from None
    if latest is not None:
        step, _, state = latest
        _check_same_run(state.get("flags"), config, "checkpoint")
        if step > config.steps:
            raise RunError(
                f"--output_dir={out} holds a run already trained {step} steps, more than --steps={config.steps}"
            )
        if step % config.eval_every and not midinterval.is_mid_interval(state):
            raise RunError(
                f"--output_dir={out} holds a checkpoint at step {step}, "
                f"not a multiple of --eval_every={config.eval_every}"
            )
    return finished, latest


def _prepare_folder(config, out, finished, latest):
    """The chief's changes to the folder before training: continue a finished run, start clean, flags.cfg."""
    if finished is not None:
        # A finished run continues (more --steps, another --stop_when): until it finishes again its
        # old results.json would describe a run that no longer exists.
        logging.info(
            "continuing the run that finished at step %s; its results.json is rewritten at the end",
            f"{finished.get('steps', 0):,}",
        )
        os.remove(os.path.join(out, results.RESULTS_FILE))
    if latest is None:  # a new run, or one killed before its first checkpoint: start clean
        for leftover in (results.CURVE_CSV, results.TENSORBOARD_DIR, results.CHECKPOINT_DIR):
            path = os.path.join(out, leftover)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    results.atomic_write_text(os.path.join(out, results.FLAGS_FILE), config.flagfile_text)


def _restore(model, resume_dir, out):
    """Restore the newest readable checkpoint (`checkpoints.restore_latest`); its state."""
    try:
        state = checkpoints.restore_latest(model, resume_dir)
    except (OSError, ValueError, KeyError) as e:
        if run_folder.is_disk_full(e):
            raise
        raise RunError(
            f"--output_dir={out}: no checkpoint can be read (the last error: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); move the folder away to start over"
        ) from None
    if state is None:
        raise RunError(f"--output_dir={out}: its checkpoints vanished while the run started")
    return state


def _run(task, config, session_start, worker, folder, progress):
    out = config.output_dir
    chief = worker is None
    resume_dir = os.path.join(out, results.CHECKPOINT_DIR)  # a worker resumes from the chief's checkpoints
    ckpt_dir = os.path.join(folder, results.CHECKPOINT_DIR)
    finished, latest = _check_folder(config, out, resume_dir)
    progress.accepted = True
    curve_path = os.path.join(folder, results.CURVE_CSV)
    if finished is not None and _already_finished(finished, config):
        if not os.path.exists(os.path.join(folder, results.CURVE_PNG)):  # killed between results.json and it
            _plot(curve_path, folder, task)
        logging.info(
            "%s: already finished (%s steps); results in %s: test %s",
            task.name,
            finished["steps"],
            os.path.join(out, results.RESULTS_FILE),
            _format_metrics(finished.get("metrics", {}).get("test", {})),
        )
        progress.step = finished.get("steps", 0)
        progress.write(*_end_status(finished))
        return finished
    if chief:
        _prepare_folder(config, out, finished, latest)

    # Fresh layer names (checkpoints name the layers) and one seed for everything.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    distribute.check_same_start(strategy, latest[0] if latest else 0, out)  # multi-worker: all from one step
    jit_compile = distribute.resolve_jit_compile(config.jit_compile)
    with strategy.scope():
        model = task.build_model()
        optimizer = optimizers.make_optimizer(
            config.optimizer, config.learning_rate, config.rmsprop_decay, config.clip_norm
        )
        metrics = distribute.compile_metrics(task.metrics, strategy)  # multi-worker: made again in the scope
        model.compile(optimizer=optimizer, loss=task.loss, metrics=metrics, jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)
        step, best, state = 0, None, {}
        if latest is not None:
            state = _restore(model, resume_dir, out)
            step, best = state["step"], state.get("best")

    parameters = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    logging.info(
        "%s | model %s, %s trainable parameters | backend %s, strategy %s (%d replica%s), jit_compile %s | %s",
        task.name,
        config.model,
        f"{parameters:,}",
        keras.backend.backend(),
        config.strategy,
        strategy.num_replicas_in_sync,
        "" if strategy.num_replicas_in_sync == 1 else "s",
        jit_compile,
        folder,
    )
    results.truncate_curve(curve_path, step)  # rows written after the checkpoint are redone
    stop_rule, stopped = _stop_rule(config, task), None
    if stop_rule is not None:
        # Rebuilt from the curve, so a resumed run keeps its streak (and one killed after
        # meeting the rule does not train on).
        stopped = stop_rule.met(results.read_curve(curve_path))

    clock = callbacks_lib.StepClock(
        config.eval_every, state.get("train_time_s", 0.0), state.get("wall_time_s", 0.0), session_start
    )
    progress.clock, progress.step = clock, step
    progress.write("running")
    monitor, mode = task.keep_best if task.keep_best else (None, "min")
    checkpointer = callbacks_lib.Checkpointer(
        ckpt_dir, clock, monitor, mode, best, extra_state={"flags": dict(config.flags)}
    )
    stopper = callbacks_lib.StopWhen(stop_rule, clock, results.read_curve(curve_path)) if stop_rule else None
    run_callbacks = [
        *_tensorboard(os.path.join(folder, results.TENSORBOARD_DIR)),
        *task.callbacks,
        callbacks_lib.DivergenceGuard(clock),  # before anything logs or saves non-finite values
        clock,  # adds step and times to the logs of the callbacks after it (`midinterval` saves right after it)
        callbacks_lib.ProgressLogger(clock, config.steps, task.references, config.log_every_s),
        callbacks_lib.CurveLogger(curve_path),
        *([stopper] if stopper else []),
        checkpointer,  # everything before it has seen this evaluation
        progress,  # last: says "step N" once step N is saved
    ]
    environment = _environment(config, strategy, jit_compile)

    def summary(status, steps, metrics, **extra):
        return results.summary(
            task=task.name,
            status=status,
            flags=config.flags,
            model=config.model,
            parameters=parameters,
            steps=steps,
            wall_time_s=clock.wall_time_s(),
            train_time_s=clock.train_time_s,
            environment=environment,
            metrics=metrics,
            task_results=task.task_results,
            **extra,
        )

    if step < config.steps and stopped is None:
        logging.info("%s from step %s to %s", "resuming" if step else "training", f"{step:,}", f"{config.steps:,}")
        diverged = None
        try:
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
        except run_folder.Diverged as e:
            diverged = _detached(e)
        if diverged is not None:
            if chief:  # the last good evaluation's metrics; its checkpoint is the newest
                results.write_results(
                    out,
                    summary(
                        "diverged",
                        diverged.step,
                        _curve_metrics(results.read_curve(curve_path)),
                        diverged={"step": diverged.step, "reason": diverged.reason},
                    ),
                )
            raise diverged
        stopped = stopper.stopped if stopper else None
    steps_done = stopped["step"] if stopped else config.steps
    best = checkpointer.best
    if best is not None:
        logging.info("restoring the best weights: step %s, %s %.4g", best["step"], monitor, best["value"])
        with strategy.scope():
            checkpoints.restore(model, checkpoints.checkpoint_path(ckpt_dir, best["step"]))

    rows = results.read_curve(curve_path)
    metrics = _curve_metrics(rows)
    if task.test_fn is not None or task.test_data is not None:
        logging.info("testing (training took %s)", callbacks_lib.format_duration(clock.train_time_s))
    if task.test_fn is not None:
        metrics["test"] = {k: float(v) for k, v in task.test_fn(model).items()}
    elif task.test_data is not None:
        test = model.evaluate(task.test_data(), return_dict=True, verbose=0)
        metrics["test"] = {k: float(v) for k, v in test.items()}
    if "test" in metrics:
        logging.info("test: %s", _format_metrics(metrics["test"]))

    checkpoints.ensure_space(model, folder)
    with results.atomic_path(os.path.join(folder, results.MODEL_FILE), suffix=".keras") as tmp:
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
    if chief:
        results.write_results(out, final)  # before any plot: a plot that fails costs nothing else
        final = results.read_results(out)  # exactly what the file says, as a re-run returns
    progress.step = steps_done
    progress.write(*_end_status(final))
    _plot(curve_path, folder, task)
    logging.info(
        "%s finished: %s steps in %s (%.3g steps/s); results in %s",
        task.name,
        f"{steps_done:,}",
        callbacks_lib.format_duration(final["wall_time_s"]),
        final["steps_per_s"] or 0,
        os.path.join(out, results.RESULTS_FILE),
    )
    return final
