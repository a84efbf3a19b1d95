"""Load weights trained with the official TF1 code into rum_tf cells.

    import rum_tf
    layer = rum_tf.RUM(100, lambda_=1, eta=0.1)
    layer.build((None, None, 10))
    rum_tf.official.restore(layer, "train_log/recall/model", scope="rnn/arum_cell")

The official scripts (jingli9111/RUM-Tensorflow, 2017, and the authors' later
rdangovs/rotational-unit-of-memory) save `tf.train.Saver` checkpoints. `restore` reads one
with `tf.train.load_checkpoint` (a reader only: no TF1 graph, any Keras backend, but
TensorFlow must be installed), takes the variables of one official cell and assigns them
to the rum_tf weights, all or none. `OFFICIAL_NAMES` is the whole mapping; docs/OFFICIAL.md
explains it.

`load_task_model` fills a whole task model (cells, output layer, embedding) of the binaries'
`--init_from_official` from an official task script's checkpoint (`TASK_GRAPHS`).
"""

import dataclasses

import numpy as np
from absl import logging

from rum_tf import cells as cells_lib
from rum_tf.baselines import eunn as eunn_lib
from rum_tf.baselines import goru as goru_lib

_LATER_CANDIDATE = (  # the candidate rows of the later RUM.py, with and without update gate
    ("embedding_kernel", ("candidate/fully_connected/weights",), -1),
    ("embedding_bias", ("candidate/fully_connected/biases",), -1),
    ("candidate_ln_gamma", ("candidate/ln_c/alpha",), -1),
    ("candidate_ln_beta", ("candidate/ln_c/bias",), -1),
)

# The mapping: per layout of an official cell, rows (rum_tf weight, official variable(s),
# axis). Names are relative to the official cell's variable scope; several official
# variables are concatenated along `axis` into one rum_tf weight. A name starting with "@"
# is an EUNN/GORU angle: the official cells create their angles when constructed, outside
# the scope of their call, so "@theta_0" is read as `angle_prefix + "theta_0"`.
# "fast_slow" lists scopes of sub-cells instead of weights ({i}: index of the fast cell).
OFFICIAL_NAMES = {
    # RUM-Tensorflow RUM.py, Oct 2017 to 2018-06-15 (paper time, e.g. 115bdb8): TF 1.4's
    # rnn_cell_impl._linear gives [r, u] from one kernel and always makes a candidate bias.
    # RUMCell is λ=0 (scope rum_cell), ARUMCell λ=1 (scope arum_cell).
    "rum_2017": (
        ("gate_kernel", ("gates/kernel",), -1),
        ("gate_bias", ("gates/bias",), -1),
        ("gate_ln_gamma", ("gates/LN_r_u/layer_norm_alpha",), -1),
        ("gate_ln_beta", ("gates/LN_r_u/layer_norm_bias",), -1),
        ("embedding_kernel", ("candidate/kernel",), -1),
        ("embedding_bias", ("candidate/bias",), -1),
        ("candidate_ln_gamma", ("candidate/LN_c/alpha",), -1),
        ("candidate_ln_beta", ("candidate/LN_c/bias",), -1),
    ),
    # The same code from c46b6e4 (2018-06-15) on: tf.contrib.layers.fully_connected instead.
    "rum_2018": (
        ("gate_kernel", ("gates/fully_connected/weights",), -1),
        ("gate_bias", ("gates/fully_connected/biases",), -1),
        ("gate_ln_gamma", ("gates/LN_r_u/layer_norm_alpha",), -1),
        ("gate_ln_beta", ("gates/LN_r_u/layer_norm_bias",), -1),
        ("embedding_kernel", ("candidate/fully_connected/weights",), -1),
        ("embedding_bias", ("candidate/fully_connected/biases",), -1),
        ("candidate_ln_gamma", ("candidate/LN_c/alpha",), -1),
        ("candidate_ln_beta", ("candidate/LN_c/bias",), -1),
    ),
    # rotational-unit-of-memory RUM.py: one dense layer per gate (r, then u).
    "rum": (
        ("gate_kernel", ("gates/fully_connected/weights", "gates/fully_connected_1/weights"), -1),
        ("gate_bias", ("gates/fully_connected/biases", "gates/fully_connected_1/biases"), -1),
        ("gate_ln_gamma", ("gates/ln_r_u/layer_norm_alpha",), -1),
        ("gate_ln_beta", ("gates/ln_r_u/layer_norm_bias",), -1),
    )
    + _LATER_CANDIDATE,
    # The same with update_gate=False: the r gate only.
    "rum_no_update_gate": (
        ("gate_kernel", ("gates/fully_connected/weights",), -1),
        ("gate_bias", ("gates/fully_connected/biases",), -1),
        ("gate_ln_gamma", ("gates/ln_r/layer_norm_alpha",), -1),
        ("gate_ln_beta", ("gates/ln_r/layer_norm_bias",), -1),
    )
    + _LATER_CANDIDATE,
    # baselineModels/LNLSTM.py: W_xh above W_hh is the kernel of [x; h].
    "ln_lstm": (
        ("kernel", ("LN_LSTMCell/W_xh", "LN_LSTMCell/W_hh"), 0),
        ("bias", ("LN_LSTMCell/bias",), -1),
        ("gate_ln_gamma", ("LN_LSTMCell/ln/layer_norm_alpha",), -1),
        ("gate_ln_beta", ("LN_LSTMCell/ln/layer_norm_bias",), -1),
        ("cell_ln_gamma", ("LN_LSTMCell/ln_c/alpha",), -1),
        ("cell_ln_beta", ("LN_LSTMCell/ln_c/bias",), -1),
    ),
    # baselineModels/EUNN.py; the angles are named "<name>theta_0", name "eunn" by default.
    "eunn": (
        ("modrelu_bias", ("modReLUBias",), -1),
        ("input_kernel", ("U",), -1),
        ("theta_0", ("@theta_0",), -1),
        ("theta_1", ("@theta_1",), -1),
    ),
    "eunn_complex": (
        ("modrelu_bias", ("modReLUBias",), -1),
        ("input_kernel", ("U_re", "U_im"), -1),
        ("theta_0", ("@theta_0",), -1),
        ("theta_1", ("@theta_1",), -1),
        ("phi_0", ("@phi_0",), -1),
        ("phi_1", ("@phi_1",), -1),
        ("omega", ("@omega",), -1),
    ),
    # baselineModels/GORU.py (and the older GORU.py of the PTB FS-GORU): U = [U_c, U_r, U_g].
    "goru": (
        ("input_kernel", ("U",), -1),
        ("recurrent_kernel", ("W_r", "W_g"), -1),
        ("reset_bias", ("bias_r",), -1),
        ("update_bias", ("bias_g",), -1),
        ("modrelu_bias", ("bias_c",), -1),
        ("theta_0", ("@theta_0",), -1),
        ("theta_1", ("@theta_1",), -1),
    ),
    # baselineModels/FSRNN.py: each sub-cell below its own scope (plus its layer's own level).
    # From 3c6ee9f (2017-12-07) the FSRNNCell is a layer calling into scope "FSRNNCell"...
    "fast_slow": (
        ("fast_cells", ("FSRNNCell/Fast_{i}",), None),
        ("slow_cell", ("FSRNNCell/Slow",), None),
    ),
    # ... before, at paper time, its __call__ opened scope "FS-RNN" (cells called directly).
    "fast_slow_2017": (
        ("fast_cells", ("FS-RNN/Fast_{i}",), None),
        ("slow_cell", ("FS-RNN/Slow",), None),
    ),
}

# Which official code wrote each layout (docs/OFFICIAL.md dates them by commit).
LAYOUT_ERAS = {
    "rum_2017": "RUM-Tensorflow RUM.py with _linear, Oct 2017",
    "rum_2018": "RUM-Tensorflow RUM.py with fully_connected, from 2018-06-15",
    "rum": "rotational-unit-of-memory RUM.py",
    "rum_no_update_gate": "rotational-unit-of-memory RUM.py, update_gate=False",
    "ln_lstm": "LNLSTM.py",
    "eunn": "EUNN.py",
    "eunn_complex": "EUNN.py, complex",
    "goru": "GORU.py",
    "fast_slow": "FSRNN.py as a layer, from Dec 2017",
    "fast_slow_2017": "FSRNN.py at paper time, Oct 2017",
}

# Where the official cells put their angles when the script builds them at the top of the
# graph (the copying, recall and bAbI scripts): EUNNCell(name="eunn") prefixes its name.
DEFAULT_ANGLE_PREFIX = {"eunn": "eunn", "goru": ""}

_LAYOUTS = (  # rum_tf class -> the layouts it may load, the first being the usual one
    (cells_lib.RUMCell, ("rum", "rum_no_update_gate", "rum_2018", "rum_2017")),
    (cells_lib.LayerNormLSTMCell, ("ln_lstm",)),
    (cells_lib.FastSlowCell, ("fast_slow", "fast_slow_2017")),
    (goru_lib.GORUCell, ("goru",)),
    (eunn_lib.EUNNCell, ("eunn", "eunn_complex")),
)
_CELL_TYPES = tuple(cls for cls, _ in _LAYOUTS)


def restore(target, checkpoint, scope, angle_prefix=None):
    """Assign the official cell's variables of a TF1 checkpoint to a rum_tf cell.

    Args:
      target: a built `RUMCell` (or `ARUMCell`), `LayerNormLSTMCell`, `FastSlowCell`,
        `EUNNCell` or `GORUCell`, or a layer or model holding exactly one of them
        (`rum_tf.RUM`, `keras.layers.RNN(cell)`, a `keras.Model`, ...).
      checkpoint: the TF1 checkpoint prefix (`.../model.ckpt`, without `.index`), or
        its folder (its latest checkpoint).
      scope: the official cell's variable scope in that graph, e.g. "rnn/rum_cell" for
        `tf.nn.dynamic_rnn(RUMCell(...))`. The scope just above it also works when
        exactly one official cell sits one level below it ("rnn"). For a FastSlowCell,
        the FSRNNCell's scope ("Model/fsrnn_cell").
      angle_prefix: EUNN/GORU only: the text before "theta_0" in the official angle
        names (the official cells create their angles outside their scope, where they
        are constructed). Default: "eunn" for EUNN, "" for GORU (the scripts' top level).

    Returns:
      {rum_tf weight path: official variable name(s)} of what was assigned.

    Raises:
      ValueError: one line naming the problem: no checkpoint, no official cell under
        `scope`, a missing or mis-shaped variable, or an official variable the target
        has no weight for (the target was built with other options). Nothing is
        assigned then.
    """
    variables, read = _open(checkpoint)
    cell = _find_cell(target)
    plan = _plan(cell, variables, read, scope, angle_prefix, checkpoint)
    for weight, value, _ in plan:
        weight.assign(value.astype(weight.dtype))
    return {weight.path: names for weight, _, names in plan}


def read_variables(checkpoint):
    """({name: shape} of a TF1 checkpoint, name -> NumPy value); ValueError if unreadable."""
    return _open(checkpoint)


def _open(checkpoint):
    try:
        import tensorflow as tf
    except ImportError:
        raise ValueError("reading an official TF1 checkpoint needs TensorFlow (pip install tensorflow)") from None
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except (ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read a TF1 checkpoint at {checkpoint!r}: {first}") from None
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    return shapes, lambda name: np.asarray(reader.get_tensor(name))


def _find_cell(target):
    """The one rum_tf cell in `target` (itself, a layer's cell, a model's layers...)."""
    found = []

    def visit(obj, seen):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, _CELL_TYPES):
            found.append(obj)
            return
        for attr in ("cell", "layer", "forward_layer", "backward_layer"):
            child = getattr(obj, attr, None)
            if child is not None:
                visit(child, seen)
        for child in getattr(obj, "layers", None) or ():
            visit(child, seen)

    visit(target, set())
    name = getattr(target, "name", type(target).__name__)
    if not found:
        raise ValueError(f"{name} holds no rum_tf cell (RUMCell, LayerNormLSTMCell, FastSlowCell, EUNNCell, GORUCell)")
    if len(found) > 1:
        raise ValueError(
            f"{name} holds {len(found)} rum_tf cells ({', '.join(c.name for c in found)}): "
            "restore each of them, with its own scope"
        )
    if not found[0].built:
        raise ValueError(f"{found[0].name} is not built: build it (or call it once) before restoring weights")
    return found[0]


def _join(scope, name):
    return f"{scope.rstrip('/')}/{name}" if scope else name


def _layouts_of(cell):
    for cls, layouts in _LAYOUTS:
        if isinstance(cell, cls):
            return layouts
    raise ValueError(f"no official layout for {type(cell).__name__}")


def _scope_names(layouts):
    """The official names of `layouts` that live under the cell's scope (not the angles)."""
    return {
        n.format(i=0)
        for layout in layouts
        for _, names, _ in OFFICIAL_NAMES[layout]
        for n in names
        if not n.startswith("@")
    }


def _under(variables, path):
    return path in variables or any(v.startswith(path + "/") for v in variables)


def _resolve_scope(variables, scope, layouts, what, checkpoint):
    """`scope` if the cell's variables are right below it, else the one scope a level down."""
    scope = scope.strip("/")
    names = _scope_names(layouts)
    if any(_under(variables, _join(scope, n)) for n in names):
        return scope
    prefix = scope + "/" if scope else ""
    below = set()
    for variable in variables:
        if variable.startswith(prefix):
            level, _, rest = variable[len(prefix) :].partition("/")
            if any(rest == n or rest.startswith(n + "/") for n in names):
                below.add(_join(scope, level))
    if len(below) == 1:
        return below.pop()
    if below:
        raise ValueError(
            f"several official {what} cells under scope {scope!r} in {checkpoint}: "
            f"{', '.join(sorted(below))}; pass the one to load as scope"
        )
    found = cell_scopes(variables)
    held = "; ".join(f"{s} ({layout} layout: {', '.join(sorted(n)[:2])} ...)" for s, (layout, n) in found.items())
    raise ValueError(
        f"no official {what} under scope {scope!r} in {checkpoint} (tried the layouts {', '.join(layouts)}, "
        f"there and one level below); "
        + (f"cell-like scopes in the checkpoint: {held}" if found else "the checkpoint holds no official cell")
    )


def cell_scopes(variables):
    """{scope: (layout, {names below it})} of every scope that holds an official cell's variable.

    A scope is listed once, with the layout whose names it holds most of (sub-cells of a
    fast-slow cell appear under their own scopes); optimizer slots are ignored.
    """
    hits = {}
    for variable in variables:
        if variable.rsplit("/", 1)[-1].startswith(("Adam", "RMSProp", "Momentum")):
            continue
        for layout, rows in OFFICIAL_NAMES.items():
            for _, names, _ in rows:
                for name in names:
                    if name.startswith("@") or "{i}" in name or not variable.endswith("/" + name):
                        continue
                    hits.setdefault(variable[: -len(name) - 1], {}).setdefault(layout, set()).add(name)
    return {s: max(by_layout.items(), key=lambda item: len(item[1])) for s, by_layout in sorted(hits.items())}


def _rum_layout(variables, scope):
    """The layout of the official RUM cell under `scope` (its scope, resolved)."""
    # The 2017 _linear code names its kernels "kernel"; the 2018 code computes r and u
    # with one fully_connected kernel of 2N columns, the later one with one per gate
    # (N columns each); N is the width of the embedding kernel.
    if _join(scope, "gates/kernel") in variables:
        return "rum_2017"
    gates = variables.get(_join(scope, "gates/fully_connected/weights"), ())
    embedding = variables.get(_join(scope, "candidate/fully_connected/weights"), ())
    if gates and embedding and gates[-1] == 2 * embedding[-1]:
        return "rum_2018"
    if _join(scope, "gates/fully_connected_1/weights") in variables:
        return "rum"
    return "rum_no_update_gate"


def describe_rum(variables, scope):
    """What an official RUM cell's variables fix: {option: value} of `RUMCell`.

    `variables`: {name: shape} (`read_variables`); `scope`: the cell's scope (resolved, as
    in `restore`). The keys: "layout", "units", "input_size", "update_gate",
    "use_embedding_bias", "use_layer_norm" and "lambda_" (None where the checkpoint does not
    record it: the later code names its cell rum_cell for λ = 0 and 1). No checkpoint records
    eta, the activation or zoneout.
    """
    layout = _rum_layout(variables, scope)
    rows = {weight: _join(scope, names[0]) for weight, names, _ in OFFICIAL_NAMES[layout]}
    embedding = variables.get(rows["embedding_kernel"], (0, 0))
    lambda_ = None
    if layout in ("rum_2017", "rum_2018"):  # RUMCell (scope rum_cell) is λ=0, ARUMCell (arum_cell) λ=1
        lambda_ = 1 if scope.rsplit("/", 1)[-1].startswith("arum_cell") else 0
    return {
        "layout": layout,
        "units": embedding[-1],
        "input_size": embedding[0],
        "update_gate": layout != "rum_no_update_gate",
        "use_embedding_bias": rows["embedding_bias"] in variables,
        "use_layer_norm": rows["candidate_ln_gamma"] in variables,
        "lambda_": lambda_,
    }


def _choose_layout(cell, variables, scope):
    if isinstance(cell, cells_lib.RUMCell):
        layout = _rum_layout(variables, scope)
        if cell.update_gate != (layout != "rum_no_update_gate"):
            raise ValueError(
                f"the official cell under {scope!r} has {'no ' if cell.update_gate else 'an '}update "
                f"gate: build {cell.name} with update_gate={not cell.update_gate}"
            )
        lambda_ = describe_rum(variables, scope)["lambda_"]
        if lambda_ is not None and cell.lambda_ != lambda_:
            kind = "an ARUMCell" if lambda_ else "a RUMCell"
            raise ValueError(
                f"the official cell under {scope!r} is {kind} (lambda={lambda_}): build {cell.name} with "
                f"lambda_={lambda_}"
            )
        return layout
    if isinstance(cell, cells_lib.FastSlowCell):
        layouts = _layouts_of(cell)
        found = [layout for layout in layouts if _under(variables, _join(scope, _fast_slow_scopes(layout)[1]))]
        return found[0] if found else layouts[0]
    if isinstance(cell, eunn_lib.EUNNCell):
        return "eunn_complex" if cell.complex else "eunn"
    return _layouts_of(cell)[0]


def _fast_slow_scopes(layout):
    """(fast cell scope with {i}, slow cell scope) of a fast-slow layout."""
    (_, (fast,), _), (_, (slow,), _) = OFFICIAL_NAMES[layout]
    return fast, slow


def _plan(cell, variables, read, scope, angle_prefix, checkpoint):
    """[(rum_tf variable, value, official names)] for `cell`; ValueError on any mismatch."""
    layouts = _layouts_of(cell)
    what = type(cell).__name__
    scope = _resolve_scope(variables, scope, layouts, what, checkpoint)
    layout = _choose_layout(cell, variables, scope)
    if isinstance(cell, cells_lib.FastSlowCell):
        fast, slow = _fast_slow_scopes(layout)
        parts = [(c, _join(scope, fast.format(i=i))) for i, c in enumerate(cell.fast_cells)]
        parts.append((cell.slow_cell, _join(scope, slow)))
        plan = []
        for sub_cell, sub_scope in parts:
            plan += _plan(sub_cell, variables, read, sub_scope, angle_prefix, checkpoint)
        return plan

    if angle_prefix is None:
        angle_prefix = DEFAULT_ANGLE_PREFIX["goru" if layout == "goru" else "eunn"]
    weights = {w.name: w for w in cell.weights}

    def full(name):
        return angle_prefix + name[1:] if name.startswith("@") else _join(scope, name)

    plan = []
    for weight_name, names, axis in OFFICIAL_NAMES[layout]:
        paths = [full(n) for n in names]
        weight = weights.get(weight_name)
        if weight is None:
            present = [p for p in paths if p in variables and np.prod(variables[p]) > 0]
            if present:
                raise ValueError(
                    f"official variable {present[0]!r} has no counterpart in {cell.name} (no "
                    f"{weight_name}): build {what} with the official cell's options"
                )
            continue
        missing = [p for p in paths if p not in variables]
        if missing:
            raise ValueError(
                f"no variable {missing[0]!r} in {checkpoint} (for {cell.name}'s {weight_name}): "
                f"{_hint(variables, scope)}"
            )
        shapes = [variables[p] for p in paths]
        if _concatenated_shape(shapes, axis) != tuple(weight.shape):
            got = " + ".join(f"{p!r} {list(s)}" for p, s in zip(paths, shapes))
            raise ValueError(
                f"official variable {got} does not fit {cell.name}'s {weight_name} "
                f"{list(weight.shape)}: build {what} with the official sizes and options"
            )
        values = [read(p) for p in paths]
        value = np.concatenate(values, axis=axis) if len(values) > 1 else values[0]
        plan.append((weight, value, paths if len(paths) > 1 else paths[0]))
    return plan


def _concatenated_shape(shapes, axis):
    """The shape of `shapes` concatenated along `axis`, or None if they do not concatenate."""
    first = shapes[0]
    if any(len(s) != len(first) or len(s) == 0 for s in shapes[1:]):
        return None
    if len(shapes) == 1:
        return first
    axis %= len(first)
    if any(s[:axis] + s[axis + 1 :] != first[:axis] + first[axis + 1 :] for s in shapes):
        return None
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1 :]


def _hint(variables, scope):
    here = sorted(v for v in variables if v.startswith(scope + "/") and "/Adam" not in v and "/RMSProp" not in v)
    if not here:
        return f"nothing under {scope!r}"
    shown = ", ".join(v[len(scope) + 1 :] for v in here[:6])
    return f"under {scope!r} there are {shown}{', ...' if len(here) > 6 else ''}"


def fixed_options(target, variables, scope):
    """What the checkpoint fixes of each cell `restore` would fill, before anything is assigned.

    Args:
      target: as for `restore` (a built cell, or a layer or model holding one).
      variables: {name: shape} of the checkpoint (`read_variables`).
      scope: as for `restore`.

    Returns:
      [(rum_tf cell, official scope, {option: value})] for the RUM and LN-LSTM cells in
      `target` (the sub-cells of a FastSlowCell one by one). RUM: `describe_rum`'s
      options; LN-LSTM: "units". ValueError (one line) when no official cell is found.
    """
    cell = _find_cell(target)
    return _fixed(cell, variables, scope, "checkpoint")


def _fixed(cell, variables, scope, checkpoint):
    scope = _resolve_scope(variables, scope, _layouts_of(cell), type(cell).__name__, checkpoint)
    if isinstance(cell, cells_lib.FastSlowCell):
        fast, slow = _fast_slow_scopes(_choose_layout(cell, variables, scope))
        out = []
        for i, sub in enumerate(cell.fast_cells):
            out += _fixed(sub, variables, _join(scope, fast.format(i=i)), checkpoint)
        return out + _fixed(cell.slow_cell, variables, _join(scope, slow), checkpoint)
    if isinstance(cell, cells_lib.RUMCell):
        return [(cell, scope, describe_rum(variables, scope))]
    if isinstance(cell, cells_lib.LayerNormLSTMCell):
        return [(cell, scope, {"units": variables.get(_join(scope, "LN_LSTMCell/W_hh"), (0,))[0]})]
    return []


@dataclasses.dataclass(frozen=True)
class TaskGraph:
    """Where an official task script's graph keeps a model's variables.

    Attributes:
      cell_scopes: scopes tried, in order, for the cell of the model's i-th recurrent layer
        ({i} is i); the first one that holds variables is used. `restore`
        also looks one level below it (the scope of the cell's layer, e.g. "rum_cell").
      outputs: (kernel, bias) names of the output layer tried, in order.
      embedding: name of the input embedding, if the model has one.
      angle_prefix: where EUNN/GORU angles are (None: `restore`'s default).
    """

    cell_scopes: tuple
    outputs: tuple
    embedding: str = None
    angle_prefix: str = None


# copying_task.py and recall_task.py (both repositories) run tf.nn.dynamic_rnn at the top of
# the graph (scope "rnn") and add V_weights, V_bias. The PTB scripts build everything under
# variable_scope "Model": the later tasks/LM/main.py calls the cell inside scope "RNN" and
# names the softmax Model/softmax_w; the 2017 ptb_task.py calls it directly and names it
# Model/softmax/softmax_w. Stacked RUMs are a MultiRNNCell (cell_0, cell_1, ...); FS-GORU
# builds its GORU (hence its angles) inside variable_scope "goru".
_SYNTHETIC = TaskGraph(cell_scopes=("rnn",), outputs=(("V_weights", "V_bias"),))
TASK_GRAPHS = {
    "copying": _SYNTHETIC,
    "recall": _SYNTHETIC,
    "ptb": TaskGraph(
        cell_scopes=("Model/RNN/multi_rnn_cell/cell_{i}", "Model/multi_rnn_cell/cell_{i}", "Model/RNN", "Model"),
        outputs=(("Model/softmax_w", "Model/softmax_b"), ("Model/softmax/softmax_w", "Model/softmax/softmax_b")),
        embedding="Model/embedding",
        angle_prefix="Model/goru/",
    ),
}


def load_task_model(model, checkpoint, graph, symbol_order=None, flags=None):
    """Copy the official weights of `checkpoint` into a task model built by rum_tf.

    Args:
      model: the task's keras.Model: recurrent layers named "rnn" or "rnn_<i>" holding
        rum_tf cells, a Dense "output" and (if `graph.embedding`) an Embedding "embedding".
      checkpoint: the official TF1 checkpoint (prefix or folder).
      graph: a `TaskGraph` (`TASK_GRAPHS[task]`).
      symbol_order: for models over symbols numbered differently from the official
        script: symbol_order[k] is the official id of rum_tf's symbol k (embedding rows,
        output columns). None: the same ids.
      flags: the run's resolved flags ({name: value}); when given, what the checkpoint fixes
        is checked against them first (`check_task_flags`).

    Raises:
      ValueError: one line naming the missing or mis-shaped variable, or the flag that
        contradicts the checkpoint.
    """
    variables, read = read_variables(checkpoint)
    layers = [layer for layer in model.layers if layer.name == "rnn" or layer.name.startswith("rnn_")]
    scopes = []
    for i in range(len(layers)):
        candidates = [s.format(i=i) for s in graph.cell_scopes]
        scopes.append(next((s for s in candidates if any(v.startswith(s + "/") for v in variables)), candidates[-1]))
    if flags is not None:
        check_task_flags(layers, scopes, variables, graph, flags)
    for layer, scope in zip(layers, scopes):
        assigned = restore(layer, checkpoint, scope, angle_prefix=graph.angle_prefix)
        logging.info("%s: %d official variables from %s (scope %s)", layer.name, len(assigned), checkpoint, scope)

    kernel_name, bias_name = next((pair for pair in graph.outputs if pair[0] in variables), graph.outputs[0])
    order = slice(None) if symbol_order is None else np.asarray(symbol_order)
    output = model.get_layer("output")
    assignments = [(output.kernel, kernel_name, lambda a: a[:, order]), (output.bias, bias_name, lambda a: a[order])]
    if graph.embedding:
        assignments.append((model.get_layer("embedding").embeddings, graph.embedding, lambda a: a[order]))
    values = []
    for weight, name, arrange in assignments:
        if name not in variables:
            raise ValueError(f"no variable {name!r} in {checkpoint} (for {weight.path})")
        if tuple(variables[name]) != tuple(weight.shape):
            raise ValueError(
                f"official variable {name!r} {list(variables[name])} does not fit {weight.path} "
                f"{list(weight.shape)}: give the official run's sizes"
            )
        values.append((weight, arrange(read(name))))
    for weight, value in values:
        weight.assign(value.astype(weight.dtype))


# RUMCell options the checkpoint fixes, by the flag that sets them; "what" names the evidence.
_RUM_FLAGS = (
    ("use_embedding_bias", "candidate bias"),
    ("use_layer_norm", "layer norm (candidate LN_c/ln_c)"),
    ("update_gate", "update gate"),
)


def check_task_flags(layers, scopes, variables, graph, flags):
    """Check the run's flags against what the official checkpoint fixes; log what it does not.

    Sizes (--units, --fast_units, --embed_size), --use_embedding_bias, --use_layer_norm,
    --update_gate and, where the official code records it (the 2017/2018 RUM.py: scope
    `arum_cell` is λ=1, `rum_cell` λ=0), --lambda_ must be those of the official run; a
    contradiction is a ValueError of one line naming the flag to change. η is never recorded
    (nor, in the later code, λ): the values in use are logged once.
    """

    def refuse(evidence, flag, value):
        setting = f"--{flag}" if value is True else f"--{flag}={str(value).lower()}"
        raise ValueError(f"the checkpoint has {evidence}: pass {setting}")

    unrecorded = set()
    for layer, scope in zip(layers, scopes):
        for cell, cell_scope, fixed in fixed_options(layer, variables, scope):
            if isinstance(cell, cells_lib.LayerNormLSTMCell):
                if "fast_units" in flags and fixed["units"] != cell.units:
                    refuse(f"fast cells of {fixed['units']} units ({cell_scope})", "fast_units", fixed["units"])
                continue
            if "units" in flags and fixed["units"] != cell.units:
                refuse(f"a RUM cell of {fixed['units']} units ({cell_scope})", "units", fixed["units"])
            for flag, what in _RUM_FLAGS:
                if flag in flags and fixed[flag] != getattr(cell, flag):
                    refuse(f"{'a' if fixed[flag] else 'no'} {what} in {cell_scope}", flag, fixed[flag])
            if fixed["lambda_"] is None:
                unrecorded.add("lambda_")
            elif "lambda_" in flags and fixed["lambda_"] != cell.lambda_:
                kind = "an ARUMCell (lambda=1)" if fixed["lambda_"] else "a RUMCell (lambda=0)"
                refuse(f"{kind} at {cell_scope}", "lambda_", fixed["lambda_"])
            unrecorded.add("eta")
    if graph.embedding and graph.embedding in variables and "embed_size" in flags:
        width = variables[graph.embedding][-1]
        if width != flags["embed_size"]:
            refuse(f"{graph.embedding} {list(variables[graph.embedding])}", "embed_size", width)
    if unrecorded:
        in_use = ", ".join(f"--{f}={flags.get(f)}" for f in sorted(unrecorded, reverse=True))
        names = " and ".join("η" if f == "eta" else "λ" for f in sorted(unrecorded, reverse=True))
        logging.warning("the official checkpoint does not record %s: this run uses %s", names, in_use)
