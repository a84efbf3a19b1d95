"""Step checkpoints that survive a SIGKILL at any moment: `step-NNNNNNNN/` folders, written whole by `atomic_path`.
Not Keras' `BackupAndRestore`: it writes weights and epoch in place one after the other, leaves out the SeedGenerator
states and restores inside `fit`, after the input pipeline that needs the step."""

import contextlib
import json
import os
import re
import shutil

import keras
import numpy as np
from absl import logging

from rum_tf.training import run_folder

WEIGHTS_FILE = "model.weights.h5"
STATE_FILE = "state.json"
_NAME = re.compile(r"^step-(\d+)$")


class Unreadable(ValueError):
    """Checkpoint folders exist, but none of them can be read."""


def _extra_variables(model):
    """Variables `save_weights` leaves out (the SeedGenerator states), in a fixed order."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def assign(variables, values, mismatch):
    """`values` into `variables`, by order (their paths vary by process); ValueError(`mismatch`) if shapes differ."""
    values = [np.asarray(v) for v in values]
    if [tuple(v.shape) for v in variables] != [v.shape for v in values]:
        raise ValueError(mismatch)
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))


def ensure_space(model, folder):
    """OSError(ENOSPC) unless `folder` has room for the model's and optimizer's variables (h5py must not hit ENOSPC)."""
    variables = list(model.variables) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    run_folder.ensure_space(folder, nbytes + nbytes // 4 + (1 << 20))  # and a margin for h5 metadata, JSON


def checkpoint_path(directory, step):
    return os.path.join(directory, f"step-{step:08d}")


def list_checkpoints(directory):
    """[(step, path)] of the `step-*` folders in `directory`, newest first, damaged ones included (only
    reading one tells, and a damaged one must stop a fresh start rather than be taken for none)."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    found = [(int(match.group(1)), os.path.join(directory, name)) for name in names if (match := _NAME.match(name))]
    return sorted(((step, path) for step, path in found if os.path.isdir(path)), reverse=True)


def save(model, directory, step, state, keep=()):
    """Write `step`'s checkpoint (`state`: JSON training state) atomically, then delete the others not in `keep`."""
    os.makedirs(directory, exist_ok=True)
    ensure_space(model, directory)
    final = checkpoint_path(directory, step)
    extra = [
        {"path": v.path, "value": np.asarray(keras.ops.convert_to_numpy(v)).tolist()} for v in _extra_variables(model)
    ]
    state = dict(state, step=int(step), extra_variables=extra)
    with run_folder.atomic_path(final) as tmp:  # replaces a checkpoint of the same step saved by an earlier session
        os.makedirs(tmp)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(state, f)
    keep = set(keep) | {step}
    for old_step, path in list_checkpoints(directory):
        if old_step not in keep:  # renamed, then deleted: a kill midway never leaves a half-deleted `step-*`
            with contextlib.suppress(OSError):
                os.replace(path, run_folder.temporary_name(path, "-old"))
    for name in os.listdir(directory):  # those, and what killed writers left
        if name.startswith(".tmp-") and not name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return final


def read_state(path):
    """The state dict of a checkpoint, without loading its weights."""
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def restore(model, path):
    """Load a checkpoint into `model` (and its optimizer); returns its state dict."""
    state = read_state(path)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(path, WEIGHTS_FILE))
    values = [entry["value"] for entry in state.get("extra_variables", [])]
    assign(_extra_variables(model), values, f"checkpoint {path} does not match the model's random-generator variables")
    return state


def latest_state(directory, read=read_state):
    """(step, path, read(path)) of the newest checkpoint that `read` can read (by default its state.json, the
    weights unread), warning about each newer one; None when there is none, `Unreadable` when none reads."""
    problems = []
    for step, path in list_checkpoints(directory):
        try:
            return step, path, read(path)
        except (OSError, ValueError, KeyError) as e:
            problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            logging.warning("cannot restore the checkpoint %s (%s); trying an older one", path, problem)
            problems.append(f"{os.path.basename(path)}: {problem}")
    if problems:
        raise Unreadable(f"no checkpoint can be read ({'; '.join(problems[:3])})")
    return None


def restore_latest(model, directory):
    """Restore the newest checkpoint that loads into `model`; its state dict, or None if there is none."""
    latest = latest_state(directory, lambda path: restore(model, path))
    return None if latest is None else latest[2]
