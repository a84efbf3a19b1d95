"""`--strategy`: tf.distribute strategies, and their absence under other backends."""

import contextlib
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
            f"(this run uses {backend}); use --strategy=default")


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


def worker_id(strategy):
    """None on the chief (the worker that writes the run's outputs), else "type-index"."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not os.environ.get("TF_CONFIG"):
        return None
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return None
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    if task_type == "worker" and task_id == 0 and not has_chief:
        return None
    return f"{task_type}-{task_id}"


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
