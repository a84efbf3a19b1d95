"""Where a run trains, as results.json records it: backend, devices, machine, versions, and the commit."""

import os
import platform
import subprocess

import keras

import rum_tf


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


def describe(strategy, replicas, jit_compile):
    """Where the run trains: the results.json fields backend, strategy, replicas, jit_compile, devices,
    machine, versions and code."""
    return {
        "backend": keras.backend.backend(),
        "strategy": strategy,
        "replicas": replicas,
        "jit_compile": jit_compile,
        "devices": _devices(),
        "machine": _machine(),
        "versions": _versions(),
        "code": CODE,
    }
