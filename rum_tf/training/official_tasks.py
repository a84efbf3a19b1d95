"""--init_from_official: evaluate a whole task model trained by the official TF1 scripts.

The binaries build their usual model, then `load` copies into it the official
checkpoint's recurrent cell(s) (`rum_tf.official.restore`), output layer and, for PTB,
embedding, and the run evaluates it on the test set without training (`evaluate_official`).
`GRAPHS` says where the official task scripts put those variables; docs/OFFICIAL.md
explains it.
"""

import dataclasses

import numpy as np
from absl import logging

from rum_tf import cells as cells_lib
from rum_tf import official
from rum_tf.training import loop


@dataclasses.dataclass(frozen=True)
class Graph:
    """Where an official task script's graph keeps a model's variables.

    Attributes:
      cell_scopes: scopes tried, in order, for the cell of the model's i-th recurrent layer
        ({i} is i); the first one that holds variables is used. `rum_tf.official.restore`
        also looks one level below it (the scope of the cell's layer, e.g. "rum_cell").
      outputs: (kernel, bias) names of the output layer tried, in order.
      embedding: name of the input embedding, if the model has one.
      angle_prefix: where EUNN/GORU angles are (None: `rum_tf.official`'s default).
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
_SYNTHETIC = Graph(cell_scopes=("rnn",), outputs=(("V_weights", "V_bias"),))
GRAPHS = {
    "copying": _SYNTHETIC,
    "recall": _SYNTHETIC,
    "ptb": Graph(
        cell_scopes=("Model/RNN/multi_rnn_cell/cell_{i}", "Model/multi_rnn_cell/cell_{i}", "Model/RNN", "Model"),
        outputs=(("Model/softmax_w", "Model/softmax_b"), ("Model/softmax/softmax_w", "Model/softmax/softmax_b")),
        embedding="Model/embedding",
        angle_prefix="Model/goru/",
    ),
}


def load(model, checkpoint, graph, symbol_order=None, flags=None):
    """Copy the official weights of `checkpoint` into a task model built by rum_tf.

    Args:
      model: the task's keras.Model: recurrent layers named "rnn" or "rnn_<i>" holding
        rum_tf cells, a Dense "output" and (if `graph.embedding`) an Embedding "embedding".
      checkpoint: the official TF1 checkpoint (prefix or folder).
      graph: a `Graph` (`GRAPHS[task]`).
      symbol_order: for models over symbols numbered differently from the official
        script: symbol_order[k] is the official id of rum_tf's symbol k (embedding rows,
        output columns). None: the same ids.
      flags: the run's resolved flags ({name: value}); when given, what the checkpoint fixes
        is checked against them first (`check_flags`).

    Raises:
      ValueError: one line naming the missing or mis-shaped variable, or the flag that
        contradicts the checkpoint.
    """
    variables, read = official.read_variables(checkpoint)
    layers = [layer for layer in model.layers if layer.name == "rnn" or layer.name.startswith("rnn_")]
    scopes = []
    for i in range(len(layers)):
        candidates = [s.format(i=i) for s in graph.cell_scopes]
        scopes.append(next((s for s in candidates if any(v.startswith(s + "/") for v in variables)), candidates[-1]))
    if flags is not None:
        check_flags(layers, scopes, variables, graph, flags)
    for layer, scope in zip(layers, scopes):
        assigned = official.restore(layer, checkpoint, scope, angle_prefix=graph.angle_prefix)
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


def evaluate_official(task, config, checkpoint, graph, symbol_order=None):
    """(task, config) that test the official checkpoint's weights instead of training.

    The model is built as usual, then `load` fills it; the run takes 0 training steps, so
    the harness goes straight to the test and writes results.json.
    """
    build = task.build_model

    def build_model():
        model = build()
        try:
            load(model, checkpoint, graph, symbol_order, flags=dict(config.flags))
        except ValueError as e:
            raise loop.RunError(f"--init_from_official={checkpoint}: {e}") from None
        return model

    return dataclasses.replace(task, build_model=build_model), dataclasses.replace(config, steps=0)


# RUMCell options the checkpoint fixes, by the flag that sets them; "what" names the evidence.
_RUM_FLAGS = (
    ("use_embedding_bias", "candidate bias"),
    ("use_layer_norm", "layer norm (candidate LN_c/ln_c)"),
    ("update_gate", "update gate"),
)


def check_flags(layers, scopes, variables, graph, flags):
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
        for cell, cell_scope, fixed in official.fixed_options(layer, variables, scope):
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
