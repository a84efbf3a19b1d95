"""`--strategy`: tf.distribute strategies, and their absence under other backends."""

import contextlib
import json
import os
import re
import signal
import threading
import types

import keras
from absl import logging

from rum_tf.training import checkpoints, results, run_folder

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")

_multi_worker = None  # this process' MultiWorkerMirroredStrategy: TensorFlow allows one, made at start-up


def check_strategy(name):
    """ValueError if `name` is unknown or needs TensorFlow and another backend is in use."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    backend = keras.backend.backend()
    if name != "default" and backend != "tensorflow":
        raise ValueError(
            f"--strategy={name} uses tf.distribute, which needs KERAS_BACKEND=tensorflow "
            f"(this run uses {backend}); use --strategy=default"
        )


def make_strategy(name, tpu=""):
    """The strategy for `--strategy=name` (`tpu`: the TPU address, "" = local); `--batch_size` stays the global
    batch. "mirrored" uses every local GPU, else every logical CPU device; "multi_worker_mirrored" is `start`'s."""
    check_strategy(name)
    if keras.backend.backend() != "tensorflow":  # JAX, torch: no tf.distribute, one replica
        return types.SimpleNamespace(num_replicas_in_sync=1, scope=contextlib.nullcontext)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        return start(name)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def start(name):
    """Make the multi-worker strategy (None for others) before TensorFlow's context starts (any tensor, variable,
    Keras metric, device listing or seed), the only time it may set up collective ops: binaries call this right after
    parsing flags, Python callers before building anything. RunError if too late, or on a malformed TF_CONFIG."""
    global _multi_worker
    if name != "multi_worker_mirrored" or keras.backend.backend() != "tensorflow":
        return None
    if _multi_worker is None:
        import tensorflow as tf

        if (workers := _worker_count()) > 1:
            logging.info("--strategy=%s: waiting for the %d workers of TF_CONFIG", name, workers)
        try:
            with contextlib.ExitStack() as stack:
                if workers > 1 and threading.current_thread() is threading.main_thread():
                    # Ctrl-C ends the process at once while it waits for the other workers, in C++, where Python's
                    # handler would never run. (SIGTERM is TensorFlow's then: its preemption notifier takes it.)
                    stack.callback(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.SIG_DFL))
                strategy = tf.distribute.MultiWorkerMirroredStrategy()  # the cluster from TF_CONFIG
        except RuntimeError as e:  # "Collective ops must be configured at program startup"
            raise run_folder.RunError(
                f"--strategy={name}: TensorFlow had started before the strategy was made ({e}); "
                "call rum_tf.training.distribute.start(strategy) first thing in the process"
            ) from None
        except ValueError as e:  # a malformed TF_CONFIG
            raise run_folder.RunError(f"--strategy={name}: TF_CONFIG: {str(e).splitlines()[0]}") from None
        _patch_keras_for_multi_worker()
        _multi_worker = strategy
    return _multi_worker


def _worker_count():
    """The workers (and chief) that TF_CONFIG names; 0 when it names none or cannot be read."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        return sum(len(cluster.get(job, ())) for job in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        return 0  # the strategy reports a malformed TF_CONFIG


def compile_metrics(metrics, strategy):
    """`metrics` for `model.compile` in `strategy.scope()`; in multi-worker mode remade there from their configs, so
    their variables sum over all replicas (made before, as tasks make them, they'd count one worker's batches)."""
    if not _in_multi_worker_mode(strategy):
        return list(metrics)
    remade = []
    for metric in metrics:
        if isinstance(metric, keras.metrics.Metric):
            try:
                metric = type(metric).from_config(metric.get_config())
            except (TypeError, ValueError) as e:
                raise run_folder.RunError(
                    f"--strategy=multi_worker_mirrored: the metric {metric.name!r} cannot be made again inside "
                    f"the strategy's scope ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                ) from None
        remade.append(metric)
    return remade


def check_same_start(strategy, step, output_dir):
    """RunError on every worker unless all start from `step` (from the chief's checkpoints in a shared `output_dir`)."""
    if not _in_multi_worker_mode(strategy):
        return
    import tensorflow as tf

    mine = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([step], tf.int64))
    steps = sorted({int(s) for s in strategy.gather(mine, axis=0).numpy()})
    if steps != [step]:
        raise run_folder.RunError(
            f"--strategy=multi_worker_mirrored: the workers would start from different steps "
            f"({', '.join(f'{s:,}' for s in steps)}; this one from {step:,}): give every worker the same "
            f"--output_dir on a shared filesystem (a worker resumes from the chief's checkpoints, here "
            f"{os.path.join(output_dir, results.CHECKPOINT_DIR)})"
        )


def lost_worker_errors(name):
    """For `except`: the errors when a worker dies or hangs (the coordinator then aborts all collectives); else ()."""
    if name != "multi_worker_mirrored" or keras.backend.backend() != "tensorflow":
        return ()
    from tensorflow import errors

    return (errors.UnavailableError, errors.DeadlineExceededError, errors.AbortedError, errors.CancelledError)


def lost_worker(error, output_dir):
    """The `RunError` for one of `lost_worker_errors`: what TensorFlow said and where the run resumes."""
    saved = checkpoints.list_checkpoints(os.path.join(output_dir, results.CHECKPOINT_DIR))
    kept = f"the last checkpoint (step {saved[0][0]:,}) is kept" if saved else "no checkpoint was saved yet"
    return run_folder.RunError(
        f"--strategy=multi_worker_mirrored: a worker was lost ({type(error).__name__}: {tensorflow_said(error)}); "
        f"{kept}: start all the workers again with the same commands to resume"
    )


def tensorflow_said(error, limit=300):
    """A TensorFlow error's message in one line of at most `limit` characters, without node stacks, op names, advice."""
    lines = [  # not blank, not the node's stack (indented: "  File ...", code, "[[{{node ...}}]]")
        line.strip()
        for line in str(getattr(error, "message", "") or error).splitlines()
        if line[:1].strip() and not line.startswith(("Graph execution error", "Detected at"))
    ]
    said = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", " ".join(lines))
    said = re.split(r" The tasks have crashed| Additional GRPC error information| \[Op:", said)[0].strip()
    return said if len(said) <= limit else said[:limit] + "..."


def _in_multi_worker_mode(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy over 2+ workers."""
    if _multi_worker is None or keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def _patch_keras_for_multi_worker():
    """Mend Keras 3's TensorFlow trainer (to 3.15 at least), which cannot `fit` under a 2+ worker
    MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388); other modes keep Keras' code. Installed by `start`.
    1. `fit`/`evaluate` all-reduce the first batch just for its shapes, failing on a tuple ("Attempt to convert a value
    (PerReplica...)"): this worker's share gives them. 2. Step values are reduced along axis 0, failing on scalars
    ("Invalid reduction dimension 0"); every replica holds the global value (`compile_metrics`): keep it, or average
    (axis=None) one that comes per replica."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    build, reduce_per_replica = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def each_per_replica(function, values):
        distributed = tf.distribute.DistributedValues
        return tf.nest.map_structure(lambda v: function(v) if isinstance(v, distributed) else v, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _in_multi_worker_mode(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # as Keras does, without the all-reduce
            data_batch = each_per_replica(lambda v: strategy.experimental_local_results(v)[0], next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def mean_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not _in_multi_worker_mode(strategy):
            return reduce_per_replica(values, strategy, reduction)
        return each_per_replica(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = mean_per_replica


def worker_id_from_env(strategy_name):
    """From TF_CONFIG, before the strategy exists (to lock the folder first): "type-index", or None on the chief
    (which writes the outputs) or a single process."""
    if strategy_name != "multi_worker_mirrored" or not os.environ.get("TF_CONFIG"):
        return None
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        task = config.get("task", {})
        task_type, task_id = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError):
        return None  # the strategy reports a malformed TF_CONFIG
    first_worker = task_type == "worker" and task_id == 0 and "chief" not in config.get("cluster", {})
    return None if task_type in (None, "chief") or first_worker else f"{task_type}-{task_id}"


def resolve_jit_compile(value):
    """`--jit_compile` "true"/"false"/"auto" -> bool; auto: under JAX (else op by op), under TensorFlow with a GPU
    (XLA did not speed these RNNs up on CPU)."""
    if value in ("true", "false"):
        return value == "true"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return keras.backend.backend() == "jax"
