"""pytest fixtures and hooks; the shared helper functions are in cell_helpers.py."""

import os
import pathlib
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under JAX most test time is XLA compiling each new shape; the tests check values, not speed, so
# they skip XLA's expensive LLVM passes (about a quarter off the JAX reruns). Set it to 0 to keep
# them. Set here, before anything imports JAX; subprocesses inherit it.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


# The data folder of data-backed tests: RUM_TF_DATA_DIR (CI sets it), else the sibling
# shared/data. Read at import, before any test edits the environment.
DATA_DIR = os.environ.get("RUM_TF_DATA_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data"
)


@pytest.fixture
def data_dir():
    """The shared data folder; the test is skipped when there is none."""
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"no data folder at {DATA_DIR} (set RUM_TF_DATA_DIR)")
    return pathlib.Path(DATA_DIR).resolve()


def pytest_terminal_summary(terminalreporter):
    """Report the largest RUMCell-vs-NumPy difference the reference grid saw."""
    module = sys.modules.get("test_cells")
    diffs = getattr(module, "MAX_DIFF", None)
    if diffs:
        terminalreporter.write_line(
            f"max |RUMCell - NumPy reference| over {len(diffs)} configs: {max(diffs.values()):.3g}"
        )
