"""tests/no_tensorflow.sh as a test: the copying and recall binaries in a fresh venv without TensorFlow.

A pytest test rather than a step after pytest so that its venv install and short runs overlap
the rest of the suite on another core.
"""

import subprocess

import pytest

from training_helpers import REPO

pytestmark = pytest.mark.slow


def test_binaries_train_and_finish_without_tensorflow():
    done = subprocess.run(["bash", "tests/no_tensorflow.sh"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("no TensorFlow: tasks.")]
    assert [line.split()[2] for line in lines] == ["tasks.copying", "tasks.recall"], done.stdout
