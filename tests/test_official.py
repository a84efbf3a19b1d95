"""rum_tf.official.restore: TF1 checkpoints with the official variable names -> rum_tf cells.

Each test writes a TF1 checkpoint (tf.compat.v1 variables, tf.compat.v1.train.Saver) whose
variables carry the names the official graphs give them (RUM.py, baselineModels/LNLSTM.py,
FSRNN.py, EUNN.py, GORU.py under tf.nn.dynamic_rnn or the PTB model's scopes), with random
values and with variables that are not the cell's (output layer, optimizer slots). After
`restore`, the rum_tf layer's outputs are compared with the float64 NumPy references, whose
weights are assembled here from the official variables by the official equations.
"""

import keras
import numpy as np
import pytest

import numpy_eunn_reference as eunn_ref
import numpy_reference as ref
import rum_tf
from rum_tf import official
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.cells import FastSlowCell, LayerNormLSTMCell, RUMCell

tf = pytest.importorskip("tensorflow")

D, N, T, B = 5, 6, 4, 3


def write_checkpoint(path, variables):
    """A TF1 checkpoint at prefix `path` holding {official name: array}."""
    holders = {
        name: tf.compat.v1.Variable(np.asarray(value, np.float32), name=f"v{i}")
        for i, (name, value) in enumerate(variables.items())
    }
    return tf.compat.v1.train.Saver(var_list=holders).save(None, str(path))


def _rand(rng, *shape, scale=0.5):
    return rng.normal(0.0, scale, shape)


def _run(layer, xs):
    return np.asarray(keras.ops.convert_to_numpy(layer(xs.astype(np.float32))), np.float64)


def _distractors(rng, names):
    """Output layer and optimizer slots, as the official graphs save them next to the cell."""
    extra = {"V_weights": _rand(rng, N, 9), "V_bias": _rand(rng, 9)}
    for name in names:
        extra[name + "/RMSProp"] = rng.normal(size=1)  # wrong shape on purpose: must be ignored
    return extra


# ---------------------------------------------------------------------------- RUM


def official_rum(rng, layout, d=D, n=N, layer_norm=False, embedding_bias=False, update_gate=True):
    """{name below the cell scope: array} as the official RUMCell creates them."""
    if layout == "2018":  # RUM-Tensorflow RUM.py (2018, fully_connected): [r, u] = [x; h] W + b, one dense layer
        v = {
            "gates/fully_connected/weights": _rand(rng, d + n, 2 * n),
            "gates/fully_connected/biases": _rand(rng, 2 * n),
        }
        ln_gates, ln_c = "gates/LN_r_u/", "candidate/LN_c/"
    else:  # rotational-unit-of-memory RUM.py: r and u, one dense layer each
        v = {"gates/fully_connected/weights": _rand(rng, d + n, n), "gates/fully_connected/biases": _rand(rng, n)}
        if update_gate:
            v["gates/fully_connected_1/weights"] = _rand(rng, d + n, n)
            v["gates/fully_connected_1/biases"] = _rand(rng, n)
        ln_gates, ln_c = ("gates/ln_r_u/" if update_gate else "gates/ln_r/"), "candidate/ln_c/"
    v["candidate/fully_connected/weights"] = _rand(rng, d, n)
    if embedding_bias:
        v["candidate/fully_connected/biases"] = _rand(rng, n)
    if layer_norm:
        width = 2 * n if update_gate else n
        v[ln_gates + "layer_norm_alpha"] = 1.0 + _rand(rng, width, scale=0.2)
        v[ln_gates + "layer_norm_bias"] = _rand(rng, width, scale=0.2)
        v[ln_c + "alpha"] = 1.0 + _rand(rng, n, scale=0.2)
        v[ln_c + "bias"] = _rand(rng, n, scale=0.2)
    return v


def reference_rum_weights(v, layout, n=N, update_gate=True):
    """The NumPy reference's weights (SPEC §2 names) from the official variables.

    The official graph computes r = [x; h] W_r + b_r and u = sigmoid([x; h] W_u + b_u),
    i.e. [r; u] from the kernel [W_r W_u] (the 2018 code stores it as one variable); its
    layer norm scales [r; u] per block by alpha and shifts by bias; e = x W_e (+ b_e).
    Without the update gate only r exists, in the official code, in rum_tf and in the reference.
    """
    w = {
        "embedding_kernel": v["candidate/fully_connected/weights"],
        "embedding_bias": v.get("candidate/fully_connected/biases"),
    }
    if layout == "2018":
        w["gate_kernel"], w["gate_bias"] = v["gates/fully_connected/weights"], v["gates/fully_connected/biases"]
        ln_gates, ln_c = "gates/LN_r_u/", "candidate/LN_c/"
    else:
        w["gate_kernel"], w["gate_bias"] = v["gates/fully_connected/weights"], v["gates/fully_connected/biases"]
        if update_gate:
            w["gate_kernel"] = np.concatenate([w["gate_kernel"], v["gates/fully_connected_1/weights"]], 1)
            w["gate_bias"] = np.concatenate([w["gate_bias"], v["gates/fully_connected_1/biases"]])
        ln_gates, ln_c = ("gates/ln_r_u/" if update_gate else "gates/ln_r/"), "candidate/ln_c/"
    if ln_c + "alpha" in v:
        w["gate_ln_gamma"], w["gate_ln_beta"] = v[ln_gates + "layer_norm_alpha"], v[ln_gates + "layer_norm_bias"]
        w["candidate_ln_gamma"], w["candidate_ln_beta"] = v[ln_c + "alpha"], v[ln_c + "bias"]
    return w


RUM_CASES = {
    # name: (official layout, official scope, scope passed, RUM options)
    "2018 RUMCell": ("2018", "rnn/rum_cell", "rnn", dict()),
    "2018 ARUMCell eta": ("2018", "rnn/arum_cell", "rnn/arum_cell", dict(lambda_=1, eta=2.0)),
    "2018 layer norm, embedding bias": (
        "2018",
        "rnn/rum_cell",
        "rnn",
        dict(use_layer_norm=True, eta=1.0, use_embedding_bias=True),
    ),
    "later lambda 0 layer norm": ("later", "rnn/rum_cell", "rnn", dict(use_layer_norm=True, eta=1.0)),
    "later lambda 1 tanh": (
        "later",
        "Model/RNN/multi_rnn_cell/cell_0/rum_cell",
        "Model/RNN/multi_rnn_cell/cell_0",
        dict(lambda_=1, eta=0.5, activation="tanh", use_embedding_bias=True),
    ),
    "later no update gate": ("later", "rnn/rum_cell", "rnn", dict(update_gate=False, use_layer_norm=True, eta=1.0)),
}


@pytest.mark.parametrize("case", list(RUM_CASES))
def test_rum_from_official_checkpoint_matches_reference(case, tmp_path):
    layout, official_scope, scope, options = RUM_CASES[case]
    update_gate = options.get("update_gate", True)
    layer = rum_tf.RUM(N, return_sequences=True, **options)
    layer.build((None, T, D))
    rng = np.random.default_rng(len(case))
    v = official_rum(
        rng,
        layout,
        layer_norm=options.get("use_layer_norm", False),
        embedding_bias=options.get("use_embedding_bias", False),
        update_gate=update_gate,
    )
    names = {f"{official_scope}/{k}": a for k, a in v.items()}
    prefix = write_checkpoint(tmp_path / "model", {**names, **_distractors(rng, names)})

    assigned = official.restore(layer, prefix, scope)
    assert sorted(n for ns in assigned.values() for n in ([ns] if isinstance(ns, str) else ns)) == sorted(names)

    xs = rng.normal(size=(B, T, D))
    got = _run(layer, xs)
    w = reference_rum_weights(v, layout, update_gate=update_gate)
    kwargs = dict(
        lambda_=options.get("lambda_", 0),
        eta=options.get("eta"),
        update_gate=update_gate,
        activation=options.get("activation", "relu"),
        layer_norm_on=options.get("use_layer_norm", False),
    )
    for i in range(B):
        want, _, _ = ref.rum_sequence(xs[i], w, **kwargs)
        np.testing.assert_allclose(got[i], want, atol=5e-5, rtol=1e-4)


# ---------------------------------------------------------------------------- LN-LSTM and FS-RNN


def official_ln_lstm(rng, d, n):
    return {
        "LN_LSTMCell/W_xh": _rand(rng, d, 4 * n),
        "LN_LSTMCell/W_hh": _rand(rng, n, 4 * n),
        "LN_LSTMCell/bias": _rand(rng, 4 * n),
        "LN_LSTMCell/ln/layer_norm_alpha": 1.0 + _rand(rng, 4 * n, scale=0.2),
        "LN_LSTMCell/ln/layer_norm_bias": _rand(rng, 4 * n, scale=0.2),
        "LN_LSTMCell/ln_c/alpha": 1.0 + _rand(rng, n, scale=0.2),
        "LN_LSTMCell/ln_c/bias": _rand(rng, n, scale=0.2),
    }


def reference_ln_lstm_weights(v):
    """The official LN_LSTMCell multiplies [x; h] by W_xh stacked above W_hh."""
    return {
        "kernel": np.concatenate([v["LN_LSTMCell/W_xh"], v["LN_LSTMCell/W_hh"]], 0),
        "bias": v["LN_LSTMCell/bias"],
        "gate_ln_gamma": v["LN_LSTMCell/ln/layer_norm_alpha"],
        "gate_ln_beta": v["LN_LSTMCell/ln/layer_norm_bias"],
        "cell_ln_gamma": v["LN_LSTMCell/ln_c/alpha"],
        "cell_ln_beta": v["LN_LSTMCell/ln_c/bias"],
    }


def test_ln_lstm_from_official_checkpoint_matches_reference(tmp_path):
    rng = np.random.default_rng(1)
    v = official_ln_lstm(rng, D, N)
    scope = "rnn/ln_lstm_cell"
    prefix = write_checkpoint(tmp_path / "model", {f"{scope}/{k}": a for k, a in v.items()})
    layer = rum_tf.Recurrent(LayerNormLSTMCell(N), return_sequences=True)
    layer.build((None, T, D))
    official.restore(layer, prefix, "rnn")
    xs = rng.normal(size=(B, T, D))
    got = _run(layer, xs)
    w = reference_ln_lstm_weights(v)
    for i in range(B):
        h, c = np.zeros(N), np.zeros(N)
        for t in range(T):
            h, c = ref.ln_lstm_step(xs[i, t], h, c, w)
            np.testing.assert_allclose(got[i, t], h, atol=5e-5, rtol=1e-4)


# The FS-RUM-2 graph of the official PTB scripts: the later one calls the FSRNNCell inside
# variable_scope("RNN") of "Model", the 2018 ptb_task.py directly in "Model".
@pytest.mark.parametrize("model_scope", ["Model/RNN", "Model"])
def test_fast_slow_rum_from_official_checkpoint_matches_reference(model_scope, tmp_path):
    rng = np.random.default_rng(2)
    nf, ns = 4, N
    cell_scope = f"{model_scope}/fsrnn_cell/FSRNNCell"
    fast = [official_ln_lstm(rng, D if i == 0 else ns, nf) for i in range(2)]
    slow = official_rum(rng, "later", d=nf, n=ns, layer_norm=True)
    names = {f"{cell_scope}/Fast_{i}/ln_lstm_cell/{k}": a for i, f in enumerate(fast) for k, a in f.items()}
    names.update({f"{cell_scope}/Slow/rum_cell/{k}": a for k, a in slow.items()})
    extra = {
        "Model/embedding": _rand(rng, 50, D),
        "Model/softmax_w": _rand(rng, nf, 50),
        "Model/softmax_b": _rand(rng, 50),
        **{k + "/Adam": a for k, a in names.items()},
    }
    prefix = write_checkpoint(tmp_path / "model", {**names, **extra})

    cell = FastSlowCell(
        [LayerNormLSTMCell(nf) for _ in range(2)], RUMCell(ns, eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9)
    )
    layer = rum_tf.Recurrent(cell, return_sequences=True)
    layer.build((None, T, D))
    assigned = official.restore(layer, prefix, model_scope)
    assert len(assigned) == 2 * 6 + 7  # every weight of the three cells (no embedding bias)

    xs = rng.normal(size=(B, T, D))
    got = _run(layer, xs)
    fast_w = [reference_ln_lstm_weights(f) for f in fast]
    slow_w = reference_rum_weights(slow, "later")
    for i in range(B):
        want = ref.fast_slow_sequence(xs[i], fast_w, slow_w, 2, dict(eta=1.0, layer_norm_on=True, zoneout_keep_h=0.9))
        np.testing.assert_allclose(got[i], want, atol=5e-5, rtol=1e-4)


# ---------------------------------------------------------------------------- EUNN, GORU


def official_angles(rng, n, capacity, fft, complex_):
    layout = rum_tf.baselines.EUNNLayout(n, capacity, fft)
    angles = {name: rng.uniform(-np.pi, np.pi, shape) for name, shape in layout.param_shapes}
    if complex_:
        angles.update(
            {name.replace("theta", "phi"): rng.uniform(-np.pi, np.pi, shape) for name, shape in layout.param_shapes}
        )
        angles["omega"] = rng.uniform(-np.pi, np.pi, n)
    return angles


@pytest.mark.parametrize("capacity, fft, complex_", [(2, False, False), (3, False, True), (2, True, False)])
def test_eunn_from_official_checkpoint_matches_reference(capacity, fft, complex_, tmp_path):
    rng = np.random.default_rng(3)
    angles = official_angles(rng, N, capacity, fft, complex_)
    inputs = {"U_re": _rand(rng, D, N), "U_im": _rand(rng, D, N)} if complex_ else {"U": _rand(rng, D, N)}
    # EUNNCell(..., name="eunn") built at the top of the graph names its angles "eunntheta_0";
    # its call under dynamic_rnn puts U and the modReLU bias in rnn/eunn_cell.
    names = {f"eunn{k}": a for k, a in angles.items()}
    names.update({f"rnn/eunn_cell/{k}": a for k, a in inputs.items()})
    names["rnn/eunn_cell/modReLUBias"] = _rand(rng, N, scale=0.1)
    prefix = write_checkpoint(tmp_path / "model", {**names, **_distractors(rng, names)})

    layer = keras.layers.RNN(EUNNCell(N, capacity=capacity, fft=fft, complex=complex_), return_sequences=True)
    layer.build((None, T, D))
    official.restore(layer, prefix, "rnn")
    xs = rng.normal(size=(B, T, D))
    got = _run(layer, xs)
    # The official complex input is x U_re + i x U_im; the reference takes [U_re, U_im].
    w = dict(
        angles,
        modrelu_bias=names["rnn/eunn_cell/modReLUBias"],
        input_kernel=np.concatenate([inputs["U_re"], inputs["U_im"]], 1) if complex_ else inputs["U"],
    )
    for i in range(B):
        h = np.zeros(2 * N if complex_ else N)
        for t in range(T):
            h = eunn_ref.eunn_step(xs[i, t], h, w, N, capacity, fft, complex_)
            np.testing.assert_allclose(got[i, t], h, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("fft, angle_prefix", [(False, None), (True, "Model/goru/")])
def test_goru_from_official_checkpoint_matches_reference(fft, angle_prefix, tmp_path):
    rng = np.random.default_rng(4)
    angles = official_angles(rng, N, 2, fft, False)
    v = {
        "U": _rand(rng, D, 3 * N),
        "W_r": _rand(rng, N, N),
        "W_g": _rand(rng, N, N),
        "bias_r": _rand(rng, N),
        "bias_g": _rand(rng, N),
        "bias_c": _rand(rng, N, scale=0.1),
    }
    names = {f"{angle_prefix or ''}{k}": a for k, a in angles.items()}
    names.update({f"rnn/goru_cell/{k}": a for k, a in v.items()})
    prefix = write_checkpoint(tmp_path / "model", {**names, **_distractors(rng, names)})

    layer = keras.layers.RNN(GORUCell(N, capacity=2, fft=fft), return_sequences=True)
    layer.build((None, T, D))
    official.restore(layer, prefix, "rnn/goru_cell", angle_prefix=angle_prefix)
    xs = rng.normal(size=(B, T, D))
    got = _run(layer, xs)
    # Official: [U_c x, U_r x, U_g x] = x U; r = σ(U_r x + h W_r + b_r); g = σ(U_g x + h W_g + b_g).
    w = dict(
        angles,
        input_kernel=v["U"],
        recurrent_kernel=np.concatenate([v["W_r"], v["W_g"]], 1),
        reset_bias=v["bias_r"],
        update_bias=v["bias_g"],
        modrelu_bias=v["bias_c"],
    )
    for i in range(B):
        h = np.zeros(N)
        for t in range(T):
            h = eunn_ref.goru_step(xs[i, t], h, w, N, 2, fft)
            np.testing.assert_allclose(got[i, t], h, atol=2e-5, rtol=1e-4)


# ---------------------------------------------------------------------------- errors


@pytest.fixture
def rum_checkpoint(tmp_path):
    v = official_rum(np.random.default_rng(5), "later")
    return tmp_path, {f"rnn/rum_cell/{k}": a for k, a in v.items()}


def _built_rum(**options):
    layer = rum_tf.RUM(N, **options)
    layer.build((None, T, D))
    return layer


def _restore_error(layer, prefix, scope="rnn", **kwargs):
    before = [np.array(w) for w in layer.get_weights()]
    with pytest.raises(ValueError) as info:
        official.restore(layer, prefix, scope, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for old, new in zip(before, layer.get_weights()):  # all or nothing
        np.testing.assert_array_equal(old, new)
    return message


def test_missing_variable_is_named(rum_checkpoint):
    path, names = rum_checkpoint
    del names["rnn/rum_cell/gates/fully_connected_1/biases"]
    prefix = write_checkpoint(path / "model", names)
    message = _restore_error(_built_rum(), prefix)
    assert "no variable 'rnn/rum_cell/gates/fully_connected_1/biases'" in message and "gate_bias" in message


def test_misshaped_variable_is_named(rum_checkpoint):
    path, names = rum_checkpoint
    names["rnn/rum_cell/candidate/fully_connected/weights"] = np.zeros((D + 1, N))
    prefix = write_checkpoint(path / "model", names)
    message = _restore_error(_built_rum(), prefix)
    assert "'rnn/rum_cell/candidate/fully_connected/weights' [6, 6]" in message
    assert "embedding_kernel [5, 6]" in message


def test_official_variable_without_counterpart_is_named(rum_checkpoint):
    path, names = rum_checkpoint
    names["rnn/rum_cell/candidate/fully_connected/biases"] = np.zeros(N)
    prefix = write_checkpoint(path / "model", names)
    message = _restore_error(_built_rum(), prefix)
    assert "'rnn/rum_cell/candidate/fully_connected/biases' has no counterpart" in message
    official.restore(_built_rum(use_embedding_bias=True), prefix, "rnn")  # the matching options load


def test_wrong_size_target_is_refused(rum_checkpoint):
    path, names = rum_checkpoint
    prefix = write_checkpoint(path / "model", names)
    layer = rum_tf.RUM(N + 1)
    layer.build((None, T, D))
    assert "does not fit" in _restore_error(layer, prefix)


def test_bad_scope_and_bad_path(rum_checkpoint):
    path, names = rum_checkpoint
    prefix = write_checkpoint(path / "model", names)
    assert "no official RUMCell under scope 'Model'" in _restore_error(_built_rum(), prefix, "Model")
    assert "cannot read a TF1 checkpoint at" in _restore_error(_built_rum(), str(path / "nothing"))


def test_targets_without_one_cell_are_refused(rum_checkpoint):
    path, names = rum_checkpoint
    prefix = write_checkpoint(path / "model", names)
    with pytest.raises(ValueError, match="holds no rum_tf cell"):
        official.restore(keras.layers.Dense(3), prefix, "rnn")
    with pytest.raises(ValueError, match="is not built"):
        official.restore(rum_tf.RUM(N), prefix, "rnn")
    two = keras.Sequential([keras.Input((T, D)), rum_tf.RUM(N, return_sequences=True), rum_tf.RUM(N)])
    with pytest.raises(ValueError, match="holds 2 rum_tf cells"):
        official.restore(two, prefix, "rnn")


def test_restores_into_a_model_and_its_folder(rum_checkpoint):
    path, names = rum_checkpoint
    write_checkpoint(path / "model", names)
    model = keras.Sequential([keras.Input((T, D)), rum_tf.RUM(N), keras.layers.Dense(2)])
    official.restore(model, str(path), "rnn")  # a folder: its latest checkpoint
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.layers[0].cell.embedding_kernel),
        names["rnn/rum_cell/candidate/fully_connected/weights"].astype(np.float32),
    )


def test_every_official_name_is_documented():
    import pathlib

    doc = (pathlib.Path(__file__).parents[1] / "docs" / "OFFICIAL.md").read_text()
    for layout, rows in official.OFFICIAL_NAMES.items():
        for weight, names, _ in rows:
            for name in names:
                assert f"`{name.lstrip('@').format(i=0)}`" in doc, (layout, name)
            assert f"`{weight}`" in doc, (layout, weight)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already under JAX")
def test_restore_works_under_jax():
    """restore only reads the checkpoint with TensorFlow: the weights load under JAX too."""
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_official.py::test_rum_from_official_checkpoint_matches_reference[2018 RUMCell]",
        "test_official.py::test_missing_variable_is_named",
    ]
    result = subprocess.run(
        cmd, cwd=here, env=dict(os.environ, KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=600
    )
    tail = "\n".join(result.stdout.splitlines()[-5:])
    assert result.returncode == 0 and "2 passed" in tail, f"{tail}\n{result.stderr[-2000:]}"


# ---------------------------------------------------------------------------- task binaries


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    return np.log(np.exp(logits).sum(-1)) - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


@pytest.mark.slow
def test_copying_binary_tests_an_official_checkpoint(tmp_path):
    from rum_tf.data import copying as copying_data
    from tasks import copying
    from training_helpers import run_in_process

    t, n, size = 5, 8, 16
    rng = np.random.default_rng(6)
    v = official_rum(rng, "2018", d=copying_data.INPUT_DEPTH, n=n)  # ARUMCell of the 2018 copying_task.py
    names = {f"rnn/arum_cell/{k}": a for k, a in v.items()}
    names.update({"V_weights": _rand(rng, n, 9), "V_bias": _rand(rng, 9)})
    prefix = write_checkpoint(tmp_path / "official" / "model", {**_distractors(rng, names), **names})
    args = [f"--T={t}", f"--units={n}", "--lambda_=1", "--eta=2", f"--test_size={size}", "--batch_size=8"]
    summary = run_in_process(copying, args + [f"--init_from_official={prefix}", f"--output_dir={tmp_path / 'run'}"])
    assert summary["steps"] == 0 and summary["flags"]["init_from_official"] == prefix
    assert set(summary["metrics"]) == {"test"}

    x, y = copying_data.copying_test_set(size, t, seed=0)
    w = reference_rum_weights(v, "2018")
    hs = np.stack([ref.rum_sequence(copying_data.one_hot(x[i]), w, lambda_=1, eta=2.0)[0] for i in range(size)])
    logits = hs @ names["V_weights"] + names["V_bias"]
    np.testing.assert_allclose(summary["metrics"]["test"]["loss"], _cross_entropy(logits, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(summary["metrics"]["test"]["accuracy"], (logits.argmax(-1) == y).mean())

    with pytest.raises(
        loop_error(),
        match=r"^--init_from_official=.*: the checkpoint has a RUM cell of 8 units \(rnn/arum_cell\): pass --units=8$",
    ):
        run_in_process(
            copying,
            [
                f"--T={t}",
                "--units=9",
                "--lambda_=1",
                f"--init_from_official={prefix}",
                f"--output_dir={tmp_path / 'bad'}",
            ],
        )


def loop_error():
    from rum_tf.training import loop

    return loop.RunError


@pytest.mark.slow
def test_recall_binary_tests_an_official_goru_checkpoint(tmp_path):
    from rum_tf.data import recall as recall_data
    from tasks import recall
    from training_helpers import run_in_process

    t, n, size = 6, 6, 20
    d = recall_data.vocab_size(t)
    rng = np.random.default_rng(7)
    angles = official_angles(rng, n, 2, False, False)  # GORUCell built at the top: angles "theta_0", "theta_1"
    v = {
        "U": _rand(rng, d, 3 * n),
        "W_r": _rand(rng, n, n),
        "W_g": _rand(rng, n, n),
        "bias_r": _rand(rng, n),
        "bias_g": _rand(rng, n),
        "bias_c": _rand(rng, n, scale=0.1),
    }
    names = {
        **angles,
        **{f"rnn/goru_cell/{k}": a for k, a in v.items()},
        "V_weights": _rand(rng, n, 10),
        "V_bias": _rand(rng, 10),
    }
    prefix = write_checkpoint(tmp_path / "model", {**names, **{k + "/Adam": a for k, a in names.items()}})
    summary = run_in_process(
        recall,
        [
            f"--T={t}",
            "--model=goru",
            f"--units={n}",
            "--train_size=8",
            "--valid_size=8",
            f"--test_size={size}",
            "--batch_size=8",
            f"--init_from_official={prefix}",
            f"--output_dir={tmp_path / 'run'}",
        ],
    )

    x, y = recall_data.recall_data(t, 8, 8, size, seed=0).test
    w = dict(
        angles,
        input_kernel=v["U"],
        recurrent_kernel=np.concatenate([v["W_r"], v["W_g"]], 1),
        reset_bias=v["bias_r"],
        update_bias=v["bias_g"],
        modrelu_bias=v["bias_c"],
    )
    last = []
    for i in range(size):
        h = np.zeros(n)
        for token in x[i]:
            h = eunn_ref.goru_step(np.eye(d)[token], h, w, n, 2, False)
        last.append(h)
    logits = np.stack(last) @ names["V_weights"] + names["V_bias"]
    np.testing.assert_allclose(summary["metrics"]["test"]["loss"], _cross_entropy(logits, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(summary["metrics"]["test"]["accuracy"], (logits.argmax(-1) == y).mean())

    del names["V_bias"]
    prefix = write_checkpoint(tmp_path / "no_bias" / "model", names)
    with pytest.raises(loop_error(), match=r"no variable 'V_bias' in .* \(for output/bias\)$"):
        run_in_process(
            recall,
            [
                f"--T={t}",
                "--model=goru",
                f"--units={n}",
                f"--init_from_official={prefix}",
                f"--output_dir={tmp_path / 'bad'}",
            ],
        )


def test_init_from_official_needs_a_checkpoint(tmp_path):
    from rum_tf.config import flags as training_flags
    from tasks import copying

    with pytest.raises(training_flags.UsageError, match="--init_from_official must be a TF1 checkpoint prefix"):
        copying.APP.parse(["copying.py", f"--init_from_official={tmp_path / 'none'}", f"--output_dir={tmp_path}"])


@pytest.mark.slow
def test_ptb_binary_tests_the_official_fs_rum2(tmp_path, data_dir, monkeypatch):
    """FS-RUM-2 as the 2018 ptb_task.py saves it (names written here; test_official_fixtures has real ones)."""
    import collections

    from rum_tf.data import files
    from rum_tf.data import ptb as ptb_data
    from tasks import ptb
    from training_helpers import run_in_process

    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    embed, nf, ns, steps, batch = 5, 4, 6, 10, 3
    rng = np.random.default_rng(8)
    cell = "Model/fsrnn_cell/FSRNNCell"
    fast = [official_ln_lstm(rng, embed if i == 0 else ns, nf) for i in range(2)]
    slow = official_rum(rng, "2018", d=nf, n=ns, layer_norm=True)
    names = {f"{cell}/Fast_{i}/ln_lstm_cell/{k}": a for i, f in enumerate(fast) for k, a in f.items()}
    names.update({f"{cell}/Slow/rum_cell/{k}": a for k, a in slow.items()})
    names.update(
        {
            "Model/embedding": _rand(rng, 50, embed),
            "Model/softmax/softmax_w": _rand(rng, nf, 50),
            "Model/softmax/softmax_b": _rand(rng, 50),
        }
    )
    prefix = write_checkpoint(tmp_path / "model.ckpt", names)
    summary = run_in_process(
        ptb,
        [
            f"--fast_units={nf}",
            f"--units={ns}",
            f"--embed_size={embed}",
            "--batch_size=4",
            f"--num_steps={steps}",
            "--max_chars=1000",
            "--max_eval_chars=300",
            f"--test_batch_size={batch}",
            f"--data_dir={data_dir}",
            f"--init_from_official={prefix}",
            f"--output_dir={tmp_path / 'run'}",
        ],
    )
    assert summary["steps"] == 0

    # The official reader numbers the characters by decreasing count in ptb.train.txt.
    train = (data_dir / "ptb" / "ptb.train.txt").read_bytes()
    counts = collections.Counter(train)
    official_id = {c: i for i, c in enumerate(sorted(counts, key=lambda c: (-counts[c], c)))}
    test = (data_dir / "ptb" / "ptb.test.txt").read_bytes()[:300]
    rows = np.frombuffer(test, np.uint8)[: batch * (len(test) // batch)].reshape(batch, -1)
    span = (rows.shape[1] - 1) // steps * steps
    fast_w = [reference_ln_lstm_weights(f) for f in fast]
    slow_w = reference_rum_weights(slow, "2018")
    losses = []
    for row in rows:
        ids = np.array([official_id[c] for c in row])
        hs = ref.fast_slow_sequence(
            names["Model/embedding"][ids[:span]],
            fast_w,
            slow_w,
            2,
            dict(eta=1.0, layer_norm_on=True, zoneout_keep_h=0.9),
        )
        logits = hs @ names["Model/softmax/softmax_w"] + names["Model/softmax/softmax_b"]
        losses.append(_cross_entropy(logits, ids[1 : span + 1]))
    # float32 (3 cells, state carried over 9 windows) against float64: 2e-5 apart here.
    np.testing.assert_allclose(summary["metrics"]["test"]["bpc"], np.mean(losses) / np.log(2), rtol=1e-4)
    assert ptb_data.official_vocab(train)[0] == ord(" ")  # the space is the most frequent character
