"""`--strategy`: tf.distribute strategies, and their absence under other backends."""

import contextlib
import json
import os

import keras

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")


class _NoStrategy:
    """Stands in for a tf.distribute strategy where there is none (JAX, torch)."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


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
    """The strategy for `--strategy=name`; `tpu` is the TPU address for "tpu" ("" = local).

    `--batch_size` stays the global batch: tf.distribute splits it across replicas.
    Under "mirrored" every local GPU is a replica, or every logical CPU device when
    there is no GPU (one CPU device unless the process split it).
    """
    check_strategy(name)
    if keras.backend.backend() != "tensorflow":
        return _NoStrategy()
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _worker_name(task_type, task_id, cluster):
    """None on the chief, else "type-index" (the rule shared by the two functions below)."""
    if task_type in (None, "chief"):
        return None
    if task_type == "worker" and task_id == 0 and "chief" not in (cluster or {}):
        return None
    return f"{task_type}-{task_id}"


def worker_id(strategy):
    """None on the chief (the worker that writes the run's outputs), else "type-index"."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not os.environ.get("TF_CONFIG"):
        return None
    return _worker_name(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def worker_id_from_env(strategy_name):
    """`worker_id` before the strategy exists, from TF_CONFIG (so the run can lock its own folder first)."""
    if strategy_name != "multi_worker_mirrored" or not os.environ.get("TF_CONFIG"):
        return None
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        task = config.get("task", {})
        return _worker_name(task.get("type"), int(task.get("index", 0)), config.get("cluster"))
    except (ValueError, AttributeError):
        return None  # the strategy reports a malformed TF_CONFIG


def resolve_jit_compile(value):
    """`--jit_compile` "true"/"false"/"auto" -> bool.

    auto: always under JAX (without jit it runs op by op); under TensorFlow only when a
    GPU is visible, because XLA gave no speed-up for these RNNs on CPU.
    """
    if value in ("true", "false"):
        return value == "true"
    if keras.backend.backend() == "jax":
        return True
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False
