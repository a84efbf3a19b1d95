"""Where a run trains, as results.json records it: backend, devices, machine, versions, and the commit."""

import contextlib
import os
import platform
import subprocess

import keras

import rum_tf


def _versions():
    found = {"rum_tf": rum_tf.__version__, "keras": keras.__version__}
    for name in ("tensorflow", "jax"):
        with contextlib.suppress(ImportError):
            found[name] = __import__(name).__version__
    return found


def _devices():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_physical_devices()
        return [d.name.replace("/physical_device:", "") for d in devices if d.device_type in ("CPU", "GPU", "TPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    return [backend]


def _machine():
    """Where the run trained: CPU model, the cores it could use, the OS and Python."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "simd": _simd(),
        "cores_used": cores,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def _simd():
    """The widest x86 vector extension of the CPU ("avx512", "avx2"), or None: a VM's CPU model name
    often hides it, and it decides which kernels TensorFlow picks (`_onednn`)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        for flag, name in (("avx512f", "avx512"), ("avx2", "avx2")):
            if flag in flags:
                return name
    return None


def _onednn():
    """Whether TensorFlow runs its oneDNN kernels; None on another backend.

    TensorFlow turns them on by itself only on some CPUs (with AVX-512); TF_ENABLE_ONEDNN_OPTS=1
    turns them on anywhere. They change rounding and speed (λ=1 RUM is 2.6x faster with them on
    an AVX2 CPU: docs/BENCHMARKS.md). TensorFlow exports no public query: a private one, guarded.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    with contextlib.suppress(ImportError, AttributeError):
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    return None


def _code():
    """The git commit of rum_tf's checkout and whether its tree was clean; None outside a checkout (e.g. a wheel)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(rum_tf.__file__)))

    def git(*args):
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "clean": git("status", "--porcelain") == ""}
    except (OSError, subprocess.SubprocessError):
        return None


# Read when the harness is imported: the code of this process, not of a tree changed later.
CODE = _code()


def describe(strategy, replicas, jit_compile):
    """The results.json fields backend, strategy, replicas, jit_compile, onednn, devices, machine, versions
    and code."""
    return {
        "backend": keras.backend.backend(),
        "strategy": strategy,
        "replicas": replicas,
        "jit_compile": jit_compile,
        "onednn": _onednn(),
        "devices": _devices(),
        "machine": _machine(),
        "versions": _versions(),
        "code": CODE,
    }
