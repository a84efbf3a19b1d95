"""Every use of Keras' private API in rum_tf, in one place, behind a version check.

rum_tf needs three things Keras does not export publicly:

- `backend_rnn`: `keras.src.backend.rnn`, the backend loop that Keras' own RNN
  layers run (`rum_tf.layers` scans its precomputed noise and inputs with it).
- `DropoutRNNCell`: `keras.src.layers.rnn.dropout_rnn_cell.DropoutRNNCell`, the
  mixin whose masks `keras.layers.RNN` asks for before its loop (`NoisyCell`).
- `optimizer_velocities(optimizer)`: the mean-square slots of a Keras RMSprop
  (`optimizer._velocities`), which `TF1RMSprop` starts at 1.

The tests also use `keras.src.testing` (the layer test harness); they import it
from here as `keras_testing()`.

These can move in any Keras minor release, so the range below is the one the
test suite has passed on, and importing rum_tf outside it stops with one line
naming both versions. setup.py pins the same range.
"""

import re

import keras

# [MIN_KERAS, MAX_KERAS): the Keras versions the whole test suite passed on.
MIN_KERAS = (3, 15)
MAX_KERAS = (3, 16)
TESTED_KERAS = "3.15.1"


def _release(version):
    """(major, minor) of a version string such as "3.15.1" or "3.16.0.dev2026"."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise ImportError(f"rum_tf cannot read the installed Keras version {version!r}")
    return int(match.group(1)), int(match.group(2))


def check_keras_version(version=None):
    """Raise ImportError (one line) unless `version` (default: the installed Keras) is supported."""
    version = keras.__version__ if version is None else version
    if not MIN_KERAS <= _release(version) < MAX_KERAS:
        raise ImportError(
            f"rum_tf supports keras>={MIN_KERAS[0]}.{MIN_KERAS[1]},<{MAX_KERAS[0]}.{MAX_KERAS[1]} "
            f"(tested on {TESTED_KERAS}); keras {version} is installed"
        )


check_keras_version()

# Imported only once the version is known to have them.
from keras.src.backend import rnn as backend_rnn  # noqa: E402
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell  # noqa: E402


def optimizer_velocities(optimizer):
    """The per-variable mean-square slots of a built `keras.optimizers.RMSprop`."""
    return optimizer._velocities


def keras_testing():
    """`keras.src.testing`, which holds Keras' own layer test harness (`run_layer_test`)."""
    from keras.src import testing

    return testing


__all__ = ["DropoutRNNCell", "backend_rnn", "check_keras_version", "keras_testing", "optimizer_velocities"]
