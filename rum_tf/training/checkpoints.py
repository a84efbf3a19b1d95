"""Step checkpoints that survive a SIGKILL at any moment.

Each checkpoint is a directory `step-NNNNNNNN/` holding `model.weights.h5` (Keras'
`save_weights`: the model's and the optimizer's variables) and `state.json` (the
training state Keras does not save: the step, elapsed times, the best value so far,
and the random generators' states, e.g. the zoneout SeedGenerator). It is written
under a temporary name, flushed and renamed into place (`run_folder.atomic_path`), so a
directory named `step-*` is always complete: a run killed while writing, or stopped by a
full disk, leaves at most a `.tmp-*` directory, which is ignored and later removed. Older
checkpoints are deleted only once the new one is in place. A run resumes through
`restore_latest`, which falls back to an older checkpoint when the newest cannot be read.

Keras' `BackupAndRestore` cannot stand in: it writes the weights and the epoch
number one after the other in place (a kill between the two resumes with mismatched
state), does not save the SeedGenerator states, and restores inside `fit`, after the
input pipeline exists, whereas resuming a step-indexed stream needs the step first.
"""

import json
import os
import re
import shutil

import keras
import numpy as np
from absl import logging

from rum_tf.training import run_folder

_MARGIN = 1 << 20  # bytes beyond the variables that a checkpoint or model file may need (h5 metadata, JSON)

WEIGHTS_FILE = "model.weights.h5"
STATE_FILE = "state.json"
_NAME = re.compile(r"^step-(\d+)$")


def _extra_variables(model):
    """Variables `save_weights` leaves out (the SeedGenerator states), in a fixed order."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def ensure_space(model, folder):
    """OSError(ENOSPC) unless `folder` has room for a file of `model`'s and its optimizer's variables
    (`run_folder.ensure_space`: h5py is never left to meet a full disk)."""
    variables = list(model.variables) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    run_folder.ensure_space(folder, nbytes + nbytes // 4 + _MARGIN)


def checkpoint_path(directory, step):
    return os.path.join(directory, f"step-{step:08d}")


def list_checkpoints(directory):
    """[(step, path)] of the checkpoint folders in `directory`, newest first.

    Every `step-*` folder counts, also one whose files a disk error has damaged: only reading it
    tells, and a damaged one must stop a fresh start rather than be taken for no checkpoint.
    """
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match and os.path.isdir(os.path.join(directory, name)):
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


class Unreadable(ValueError):
    """Checkpoint folders exist, but none of them can be read."""


def _discard(path):
    """Delete a checkpoint folder: renamed first, so a kill midway leaves a `.tmp-*` (removed later), never a
    half-deleted `step-*`."""
    doomed = run_folder.temporary_name(path, "-old")
    try:
        os.replace(path, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def save(model, directory, step, state, keep=()):
    """Write the checkpoint of `step` atomically; delete older ones except `keep` steps.

    Args:
      model: a compiled model (its optimizer is saved with it).
      directory: the checkpoints folder.
      step: the number of training steps done.
      state: JSON-serialisable training state to store beside the weights.
      keep: steps whose checkpoints must survive (e.g. the best one).
    """
    os.makedirs(directory, exist_ok=True)
    ensure_space(model, directory)
    final = checkpoint_path(directory, step)
    state = dict(
        state,
        step=int(step),
        extra_variables=[
            {"path": v.path, "value": np.asarray(keras.ops.convert_to_numpy(v)).tolist()}
            for v in _extra_variables(model)
        ],
    )
    with run_folder.atomic_path(final) as tmp:  # replaces a checkpoint of the same step saved by an earlier session
        os.makedirs(tmp)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(state, f)
    keep = set(keep) | {step}
    for old_step, path in list_checkpoints(directory):
        if old_step not in keep:
            _discard(path)
    for name in os.listdir(directory):
        if name.startswith(".tmp-") and not name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return final


def read_state(path):
    """The state dict of a checkpoint, without loading its weights."""
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def latest_state(directory):
    """(step, path, state) of the newest checkpoint whose state.json reads, or None when there is no
    checkpoint folder; the weights are not read. `Unreadable` (one line) when no state.json reads."""
    problems = []
    for step, path in list_checkpoints(directory):
        try:
            return step, path, read_state(path)
        except (OSError, ValueError) as e:
            problem = f"{os.path.basename(path)}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            logging.warning("cannot read the state of %s; looking at an older checkpoint", problem)
            problems.append(problem)
    if problems:
        raise Unreadable(f"no checkpoint can be read ({'; '.join(problems[:3])})")
    return None


def restore(model, path):
    """Load a checkpoint into `model` (and its optimizer); returns its state dict."""
    state = read_state(path)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(path, WEIGHTS_FILE))
    extra = _extra_variables(model)
    saved = state.get("extra_variables", [])
    values = [np.asarray(entry["value"]) for entry in saved]
    # Matched by order (paths carry auto-generated names that differ between processes).
    if [tuple(v.shape) for v in extra] != [x.shape for x in values]:
        raise ValueError(f"checkpoint {path} does not match the model's random-generator variables")
    for variable, value in zip(extra, values):
        variable.assign(value.astype(variable.dtype))
    return state


def restore_latest(model, directory):
    """Restore the newest readable checkpoint; its state dict, or None if there is none.

    An unreadable checkpoint (a disk error) is skipped for an older one; if none can
    be read the last error is raised rather than silently starting over.
    """
    error = None
    for _, path in list_checkpoints(directory):
        try:
            return restore(model, path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            logging.warning(
                "cannot restore the checkpoint %s (%s: %s); trying an older one",
                path,
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
            )
            error = e
    if error is not None:
        raise error
    return None
