"""rum_tf.compat: the Keras version check in front of the private Keras API."""

import importlib

import keras
import pytest

from rum_tf import compat


@pytest.mark.parametrize("version", ["3.15.0", "3.15.1", "3.15.2rc1"])
def test_tested_minor_versions_pass(version):
    compat.check_keras_version(version)


@pytest.mark.parametrize("version", ["3.14.2", "3.16.0", "3.16.0.dev2026113003", "4.0.0", "2.15.0"])
def test_other_versions_stop_with_one_line_naming_both(version):
    with pytest.raises(ImportError) as error:
        compat.check_keras_version(version)
    message = str(error.value)
    assert "\n" not in message
    assert f"keras {version} is installed" in message
    assert "keras>=3.15,<3.16" in message and "3.15.1" in message


def test_an_unreadable_version_is_an_import_error():
    with pytest.raises(ImportError, match="cannot read the installed Keras version 'nightly'"):
        compat.check_keras_version("nightly")


def test_importing_compat_under_an_unsupported_keras_fails_before_the_private_imports(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    try:
        with pytest.raises(ImportError, match="keras 3.16.0 is installed"):
            importlib.reload(compat)
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
    assert compat.DropoutRNNCell is not None and callable(compat.backend_rnn)


def test_velocities_are_the_rmsprop_mean_squares():
    variable = keras.Variable([1.0, 2.0])
    optimizer = keras.optimizers.RMSprop(0.1)
    optimizer.build([variable])
    (velocity,) = compat.optimizer_velocities(optimizer)
    assert tuple(velocity.shape) == (2,)
