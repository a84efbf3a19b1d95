"""Runs the rotation, cell, layer and baseline-cell tests again under KERAS_BACKEND=jax.

Keras fixes its backend at import, so each module runs in a pytest process of its own; one
process per module lets pytest-xdist spread them over the cores with the rest of the suite.
"""

import os
import subprocess
import sys

import keras
import pytest

# A second pytest process per module: up to a minute or two each.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running under JAX"),
]

HERE = os.path.dirname(os.path.abspath(__file__))
PORTABLE_MODULES = [
    "test_rotation.py",
    "test_cells.py",
    "test_layers.py",
    "test_baselines.py",
    "test_keras_rnn.py",
    "test_keras_harness.py",
]


@pytest.mark.parametrize("module", PORTABLE_MODULES)
def test_portable_module_passes_under_jax(module):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module]
    # A guard against a hang, not a speed check.
    result = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=1200)
    tail = "\n".join(result.stdout.splitlines()[-15:])
    assert result.returncode == 0, f"JAX run of {module} failed:\n{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail
