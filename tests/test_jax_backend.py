"""Runs the rotation, cell, layer and baseline-cell tests again under KERAS_BACKEND=jax.

Keras fixes its backend at import, so this needs a separate pytest process.
"""

import os
import subprocess
import sys

import keras
import pytest

# A second pytest process over several modules: minutes.
pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
PORTABLE_MODULES = [
    "test_rotation.py",
    "test_cells.py",
    "test_layers.py",
    "test_baselines.py",
    "test_keras_rnn.py",
    "test_keras_harness.py",
]


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running under JAX")
def test_portable_suite_passes_under_jax():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + PORTABLE_MODULES
    # A guard against a hang, not a speed check: on a loaded 2-core machine the suite has taken 15 minutes.
    result = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=2400)
    tail = "\n".join(result.stdout.splitlines()[-15:])
    assert result.returncode == 0, f"JAX run failed:\n{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail
