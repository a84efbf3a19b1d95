"""The RUM layer's fast path, the Recurrent layer, XLA and saving."""

import contextlib
import json
import os

import keras
import numpy as np
import pytest
from keras import ops

import numpy_reference as ref
from cell_helpers import (
    NoiseProbe,
    assert_config_round_trip,
    backend,
    finite_differences,
    gradients,
    randomize,
    weight_gradients,
    weights_of,
)
from rum_tf import RUM, FastSlowCell, LayerNormLSTMCell, Recurrent, RUMCell

B, T, D, N = 4, 9, 5, 6


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _x(seed=0, t=T):
    return np.random.default_rng(seed).normal(size=(B, t, D)).astype(np.float32)


def _built_rum(seed=1, scale=0.5, **kwargs):
    layer = RUM(N, **kwargs)
    layer.build((None, None, D))
    randomize(layer, np.random.default_rng(seed), scale=scale)
    return layer


CONFIGS = [
    dict(),
    dict(lambda_=1),
    dict(lambda_=1, eta=0.1, track_angle=True),
    dict(eta=2.0, use_layer_norm=True, zoneout_keep_h=0.9),
    dict(lambda_=1, eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9, use_embedding_bias=True),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("input_projection", ["sequence", "step"])
def test_fast_path_equals_rnn_of_cell(kwargs, go_backwards, input_projection):
    layer = _built_rum(
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        input_projection=input_projection,
        **kwargs,
    )
    reference = keras.layers.RNN(layer.cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = _x()
    got = layer(x)
    want = reference(x)
    assert len(got) == len(want) == 1 + len(layer.cell.state_size)
    for g, w in zip(got, want):
        np.testing.assert_allclose(_np(g), _np(w), atol=1e-5)


GRADIENT_CONFIGS = [
    dict(),
    dict(lambda_=1, eta=0.1, track_angle=True),
    dict(eta=2.0, use_layer_norm=True, zoneout_keep_h=0.9, use_embedding_bias=True),
]


@pytest.mark.parametrize("kwargs", GRADIENT_CONFIGS)
@pytest.mark.parametrize("input_projection", ["sequence", "step"])
def test_weight_gradients_match_finite_differences_of_the_reference(kwargs, input_projection):
    # The layer's gradients run through the hand-written rotation gradient; the
    # reference is the float64 NumPy RUM of SPEC, differentiated numerically.
    layer = _built_rum(return_sequences=True, input_projection=input_projection, **kwargs)
    x = _x(9, t=4)
    outputs = _np(layer(x))
    weigh = np.random.default_rng(10).normal(size=outputs.shape)
    got = weight_gradients(layer, lambda y: ops.sum(y * ops.cast(weigh, y.dtype)), x)
    w = weights_of(layer)
    assert set(got) == set(w)
    ref_kwargs = dict(kwargs, layer_norm_on=kwargs.get("use_layer_norm", False))
    ref_kwargs.pop("use_layer_norm", None)
    ref_kwargs.pop("use_embedding_bias", None)

    def reference_loss(**changed):
        weights = dict(w, **changed)
        return sum(np.sum(weigh[i] * ref.rum_sequence(x[i], weights, **ref_kwargs)[0]) for i in range(len(x)))

    np.testing.assert_allclose(reference_loss(), np.sum(weigh * outputs), rtol=1e-5)
    names = list(got)
    want = finite_differences(lambda *arrays: reference_loss(**dict(zip(names, arrays))), *[w[n] for n in names])
    for name, numeric in zip(names, want):
        np.testing.assert_allclose(got[name], numeric, atol=2e-4, rtol=1e-3, err_msg=name)


def test_last_output_and_mask():
    layer = _built_rum(lambda_=1)
    x = _x()
    np.testing.assert_allclose(_np(layer(x)), _np(keras.layers.RNN(layer.cell)(x)), atol=1e-5)
    mask = np.ones((B, T), bool)
    mask[:, 6:] = False
    # A masked tail leaves the last output at that of the unmasked prefix.
    np.testing.assert_allclose(_np(layer(x, mask=mask)), _np(layer(x[:, :6])), atol=1e-5)


def test_stateful_continues_the_sequence():
    x = np.random.default_rng(2).normal(size=(B, 8, D)).astype(np.float32)
    whole = _built_rum(lambda_=1, return_sequences=True)
    parts = RUM(N, lambda_=1, return_sequences=True, stateful=True)
    parts.build((B, None, D))
    parts.set_weights(whole.get_weights())
    first, second = _np(parts(x[:, :5])), _np(parts(x[:, 5:]))
    np.testing.assert_allclose(np.concatenate([first, second], 1), _np(whole(x)), atol=1e-5)
    parts.reset_state()
    np.testing.assert_allclose(_np(parts(x[:, :5])), first, atol=1e-6)


def test_plain_keras_rnn_restarts_the_memory_at_the_identity():
    # Keras' RNN resets every state to zeros and ignores get_initial_state: the
    # λ=1 memory travels as M - I so that zeros mean M = I in any Keras RNN.
    cell = RUMCell(N, lambda_=1, eta=1.0)
    layer = keras.layers.RNN(cell, return_sequences=True, stateful=True)
    x = _x(11)
    layer(x)
    randomize(cell, np.random.default_rng(12))
    layer(x)  # leaves a non-trivial state behind
    layer.reset_state()
    got = _np(layer(x))
    w = weights_of(cell)
    for i in range(B):
        np.testing.assert_allclose(got[i], ref.rum_sequence(x[i], w, lambda_=1, eta=1.0)[0], atol=5e-5, rtol=1e-4)


def _model(layer, t=T, d=D):
    inputs = keras.Input((t, d))
    return keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)))


@pytest.mark.parametrize("kwargs", CONFIGS[1:4])
def test_jit_compiled_equals_eager(kwargs):
    model = _model(_built_rum(**kwargs))
    x = _x(3)
    eager = _np(model(x))
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, atol=1e-5)


@pytest.mark.skipif(backend() != "tensorflow", reason="tf.function is TensorFlow's")
def test_tf_function_xla_equals_eager():
    import tensorflow as tf

    layer = _built_rum(lambda_=1, eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9, return_sequences=True)
    x = _x(4)
    np.testing.assert_allclose(_np(tf.function(layer, jit_compile=True)(x)), _np(layer(x)), atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RUM(N, lambda_=1, eta=0.5, use_layer_norm=True, zoneout_keep_h=0.9),
        lambda: Recurrent(FastSlowCell([LayerNormLSTMCell(4), LayerNormLSTMCell(4)], RUMCell(5, eta=1.0))),
    ],
)
def test_save_load_round_trip(make, tmp_path):
    model = _model(make())
    randomize(model, np.random.default_rng(5), scale=0.3)
    x = _x(6)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))
    as_json = lambda layer: json.loads(json.dumps(layer.get_config()))  # tuples and lists alike
    assert as_json(loaded.layers[1]) == as_json(model.layers[1])


def test_layer_exposes_cell_arguments_and_weights():
    layer = _built_rum(lambda_=1, eta=0.1)
    assert (layer.units, layer.lambda_, layer.eta) == (N, 1, 0.1)
    assert layer.gate_kernel is layer.cell.gate_kernel and layer.embedding_bias is None
    with pytest.raises(ValueError):
        RUM(N, lambda_=3)
    with pytest.raises(ValueError, match="input_projection"):
        RUM(N, input_projection="hoisted")


def test_training_noise_is_fresh_at_every_step():
    layer = Recurrent(NoiseProbe(seed=1), return_sequences=True)
    x = _x(7, t=12)
    inference = _np(layer(x))
    assert not inference.any()
    noise = _np(layer(x, training=True))
    assert noise.shape == (B, 12, 3)
    # Every step and example gets its own draw (a draw inside lax.scan would repeat).
    flat = noise.reshape(-1, 3)
    assert len(np.unique(flat[:, 0])) == flat.shape[0]
    assert 0.0 <= noise.min() and noise.max() < 1.0


@pytest.mark.slow
def test_fit_with_zoneout_lowers_the_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(64, 6, D)).astype(np.float32)
    y = x[:, 0, :2] * 2.0  # needs memory of the first step
    inputs = keras.Input((6, D))
    outputs = keras.layers.Dense(2)(RUM(16, lambda_=1, eta=2.0, zoneout_keep_h=0.9, seed=2)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < 0.5 * history[0]


def test_mixed_precision_layer_is_finite():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = RUM(N, lambda_=1, eta=1.0, use_layer_norm=True)
        x = np.zeros((2, 5, D), np.float16)
        out = layer(x)
        assert layer.compute_dtype == "float32" and np.isfinite(_np(out)).all()
        # Zero inputs make e = 0 (a degenerate rotation) at every step.
        (grad,) = gradients(lambda x: layer(ops.cast(x, "float16")), x)
        assert np.isfinite(grad).all()
    finally:
        keras.config.set_dtype_policy("float32")


# λ=1's reversible backward pass (rum_tf.reversible) against the NumPy
# reference. Gradients are checked along one random direction per weight tensor
# and one for the inputs: central differences of the float64 reference along a
# direction v give <grad, v>, so a wrong tensor cannot hide, and a long sequence
# stays cheap. The long sequences run the layer in float64: a float32 RUM
# trajectory of 150 steps drifts from the float64 one by itself (without η the
# state is not normalised), whatever the backward pass; the float32 drift of
# the reversible pass is measured in docs/BENCHMARKS.md.
REVERSIBLE_CONFIGS = [
    dict(),
    dict(eta=0.1),
    dict(eta=2.0),
    dict(eta=0.1, use_layer_norm=True),
    dict(eta=2.0, use_layer_norm=True, zoneout_keep_h=0.8, use_embedding_bias=True),
    dict(zoneout_keep_h=0.7),
]


@contextlib.contextmanager
def _dtype_scope(dtype):
    if dtype == "float64" and backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def _loss_and_gradients(layer, x, weigh, call_kwargs):
    """(outputs, {weight name: gradient}, input gradient) of sum(weigh * layer(x)), compiled."""
    variables = layer.trainable_variables
    x = ops.convert_to_tensor(x, layer.compute_dtype)
    weigh = ops.convert_to_tensor(weigh, layer.compute_dtype)
    if backend() == "tensorflow":
        import tensorflow as tf

        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = layer(x, **call_kwargs)
                total = tf.reduce_sum(outputs * weigh)
            return outputs, tape.gradient(total, [x] + variables)

        outputs, grads = run(x)
    else:
        import jax

        fixed = [v.value for v in layer.non_trainable_variables]

        def total(values, x):
            outputs = layer.stateless_call(values, fixed, x, **call_kwargs)[0]
            return jax.numpy.sum(outputs * weigh), outputs

        (_, outputs), (g_w, g_x) = jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))(
            [v.value for v in variables], x
        )
        grads = [g_x] + list(g_w)
    grads = [np.asarray(g, np.float64) for g in grads]
    return _np(outputs), {v.name: g for v, g in zip(variables, grads[1:])}, grads[0]


def _directional_check(layer, x, reference, call_kwargs=None, seed=20, atol=5e-5, rtol=2e-3, step=1e-6):
    """Compares the layer's outputs and gradients with `reference` and its differences.

    reference(weights, x) -> float64 outputs [B, T, out] of the NumPy RUM.
    """
    call_kwargs = call_kwargs or {}
    w = weights_of(layer)
    want = reference(w, x)
    rng = np.random.default_rng(seed)
    weigh = rng.normal(size=want.shape)
    outputs, got, got_x = _loss_and_gradients(layer, x, weigh, call_kwargs)
    np.testing.assert_allclose(outputs, want, atol=atol, rtol=rtol / 20)
    assert set(got) == set(w)
    for name in sorted(w) + ["inputs"]:
        direction = rng.normal(size=x.shape if name == "inputs" else w[name].shape)
        if name == "inputs":
            moved = [reference(w, x + sign * step * direction) for sign in (1, -1)]
            analytic = np.sum(got_x * direction)
        else:
            moved = [reference(dict(w, **{name: w[name] + sign * step * direction}), x) for sign in (1, -1)]
            analytic = np.sum(got[name] * direction)
        numeric = np.sum(weigh * (moved[0] - moved[1])) / (2 * step)
        scale = np.sqrt(direction.size) * np.linalg.norm(got_x if name == "inputs" else got[name]) / direction.size
        assert abs(analytic - numeric) <= rtol * (abs(numeric) + scale), (name, analytic, numeric)


def _reference_kwargs(kwargs):
    out = dict(lambda_=1, **kwargs)
    out["layer_norm_on"] = out.pop("use_layer_norm", False)
    out.pop("use_embedding_bias", None)
    return out


@pytest.mark.parametrize("t, dtype", [(40, "float32"), (150, "float64")])
@pytest.mark.parametrize("kwargs", REVERSIBLE_CONFIGS)
def test_reversible_gradients_match_the_reference(kwargs, t, dtype):
    with _dtype_scope(dtype):
        layer = _built_rum(lambda_=1, return_sequences=True, seed=3, dtype=dtype, **kwargs)
        assert layer._runs_reversible()
        x = _x(21, t=t)
        ref_kwargs = _reference_kwargs(kwargs)
        call_kwargs = {}
        masks = None
        if kwargs.get("zoneout_keep_h"):
            # Training zoneout with fixed noise, so the reference can use the same masks.
            noise = np.random.default_rng(22).uniform(size=(B, t, N))
            layer.cell.draw_noise = lambda shape: ops.convert_to_tensor(noise, dtype)
            masks = (noise < kwargs["zoneout_keep_h"]).astype(np.float64)
            call_kwargs = dict(training=True)

        def reference(w, x):
            return np.stack(
                [
                    ref.rum_sequence(x[i], w, zoneout_masks=None if masks is None else masks[i], **ref_kwargs)[0]
                    for i in range(len(x))
                ]
            )

        # 150 random steps make a very curved loss (gradients ~1e4): the float64
        # differences need a small step to converge.
        tolerances = dict(atol=5e-5, rtol=2e-3) if dtype == "float32" else dict(atol=1e-9, rtol=1e-4, step=1e-8)
        _directional_check(layer, x, reference, call_kwargs, **tolerances)


@pytest.mark.parametrize("variant", ["mask", "go_backwards", "zero_output_for_mask"])
def test_reversible_masking_and_direction_match_the_reference(variant):
    kwargs = dict(eta=1.0, use_layer_norm=True)
    layer = _built_rum(
        lambda_=1,
        return_sequences=True,
        go_backwards=variant == "go_backwards",
        zero_output_for_mask=variant == "zero_output_for_mask",
        seed=4,
        **kwargs,
    )
    t = 30
    x = _x(23, t=t)
    mask = np.random.default_rng(24).uniform(size=(B, t)) < 0.7
    mask[0] = True  # one example without masked steps
    mask[1, :5] = False  # one that starts masked
    ref_kwargs = _reference_kwargs(kwargs)

    def reference(w, x):
        outs = []
        for i in range(len(x)):
            if variant == "go_backwards":
                outs.append(ref.rum_sequence(x[i, ::-1], w, **ref_kwargs)[0])
                continue
            out = ref.rum_sequence(x[i], w, step_mask=mask[i], **ref_kwargs)[0]
            if variant == "zero_output_for_mask":
                out = out * mask[i][:, None]
            outs.append(out)
        return np.stack(outs)

    call_kwargs = {} if variant == "go_backwards" else dict(mask=ops.convert_to_tensor(mask))
    _directional_check(layer, x, reference, call_kwargs)


def test_reversible_equals_autodiff_for_states_and_initial_state_gradients():
    # return_state, a given initial state (as stateful layers and CarryState
    # pass it) and the gradients that reach it: the two paths agree.
    x = _x(25, t=20)
    layers = [_built_rum(lambda_=1, eta=0.5, return_state=True, reversible=r, seed=5) for r in (True, False)]
    rng = np.random.default_rng(26)
    h0 = rng.normal(size=(B, N)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(B, N, N)))
    d0 = (q - np.eye(N)).reshape(B, N * N).astype(np.float32)  # an orthogonal memory, as M - I
    weigh = [rng.normal(size=s) for s in [(B, N), (B, N), (B, N * N)]]

    def total(layer, h0, d0):
        outs = layer(x, initial_state=[h0, d0])
        return sum(ops.sum(o * ops.cast(w, o.dtype)) for o, w in zip(outs, weigh))

    got, want = (gradients(lambda h0, d0, layer=layer: total(layer, h0, d0), h0, d0) for layer in layers)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=2e-5, rtol=1e-4)
    for g, w in zip(layers[0](x, initial_state=[h0, d0]), layers[1](x, initial_state=[h0, d0])):
        np.testing.assert_allclose(_np(g), _np(w), atol=1e-5)


# Left padding without a mask, constant, huge and tiny inputs: ten such steps, then data.
EXTREME_INPUTS = {"zeros": 0.0, "constant": 0.7, "huge": 1e12, "tiny": 1e-20}


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("eta", [None, 1.0])
@pytest.mark.parametrize("lambda_", [0, 1])
def test_values_and_gradients_are_finite_for_any_input(lambda_, eta, policy):
    keras.config.set_dtype_policy(policy)
    try:
        layer = _built_rum(lambda_=lambda_, eta=eta, return_sequences=True)
        # One example per kind of input (the examples of a batch do not interact).
        x = np.stack([np.full((13, D), value, np.float32) for value in EXTREME_INPUTS.values()])
        x[:, 10:] = _x(11, t=3)[0]
        out = _np(layer(x))
        assert np.isfinite(out).all(axis=(1, 2)).tolist() == [True] * len(EXTREME_INPUTS)
        grads = weight_gradients(layer, lambda y: ops.sum(y * ops.cast(out, y.dtype)), x)
        for name, grad in grads.items():
            assert np.isfinite(grad).all(), name
        if policy == "float32":
            # The forward values stay those of the official formula (eps-floored norm).
            w = weights_of(layer)
            for i in range(len(x)):
                want = ref.rum_sequence(x[i], w, lambda_=lambda_, eta=eta)[0]
                np.testing.assert_allclose(out[i], want, atol=5e-5, rtol=1e-4)
    finally:
        keras.config.set_dtype_policy("float32")


def test_gru_arguments_are_accepted_and_serialised():
    kwargs = dict(
        dropout=0.2,
        recurrent_dropout=0.3,
        kernel_regularizer="l2",
        recurrent_regularizer="l1",
        bias_regularizer="l2",
        kernel_constraint="max_norm",
        recurrent_constraint="non_neg",
        bias_constraint="unit_norm",
    )
    layer = RUM(N, **kwargs)
    layer.build((None, None, D))
    config = layer.get_config()
    assert config["dropout"] == 0.2 and config["recurrent_dropout"] == 0.3
    assert RUM.from_config(config).get_config() == config
    assert_config_round_trip(layer.cell)
    with pytest.raises(ValueError, match="dropout"):
        RUM(N, dropout=1.0)


def test_regularizers_touch_the_documented_weights():
    kernel, recurrent, bias = keras.regularizers.L2(0.1), keras.regularizers.L1(0.2), keras.regularizers.L2(0.3)
    layer = _built_rum(
        use_embedding_bias=True, kernel_regularizer=kernel, recurrent_regularizer=recurrent, bias_regularizer=bias
    )
    w = weights_of(layer)
    want = (
        0.1 * (np.sum(w["gate_kernel"][:D] ** 2) + np.sum(w["embedding_kernel"] ** 2))
        + 0.2 * np.sum(np.abs(w["gate_kernel"][D:]))
        + 0.3 * (np.sum(w["gate_bias"] ** 2) + np.sum(w["embedding_bias"] ** 2))
    )
    layer(_x())
    np.testing.assert_allclose(sum(float(_np(loss)) for loss in layer.losses), want, rtol=1e-5)


def test_constraints_touch_the_documented_weights():
    non_neg = keras.constraints.NonNeg()
    inputs = keras.Input((T, D))
    rum = RUM(N, kernel_constraint=non_neg, bias_constraint=non_neg)
    model = keras.Model(inputs, keras.layers.Dense(1)(rum(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.fit(_x(), np.full((B, 1), 5.0, np.float32), epochs=2, verbose=0)
    w = weights_of(rum)
    for name in ("embedding_kernel", "gate_bias"):
        assert w[name].min() >= 0.0, name
    assert w["gate_kernel"][:D].min() >= 0.0
    assert w["gate_kernel"][D:].min() < 0.0  # the state rows have no constraint here


@pytest.mark.parametrize("input_projection", ["sequence", "step"])
def test_dropout_masks_the_inputs_and_the_state_before_the_gates(input_projection, monkeypatch):
    layer = _built_rum(
        lambda_=1, eta=1.0, dropout=0.5, recurrent_dropout=0.5, return_sequences=True, input_projection=input_projection
    )
    rng = np.random.default_rng(12)
    input_mask = (rng.random((B, D)) < 0.5).astype(np.float32) * 2.0
    recurrent_mask = (rng.random((B, N)) < 0.5).astype(np.float32) * 2.0
    # The masks Keras' RNN asks the cell for before its loop, fixed here to compare with the reference.
    monkeypatch.setattr(layer.cell, "get_dropout_mask", lambda x: ops.convert_to_tensor(input_mask))
    monkeypatch.setattr(layer.cell, "get_recurrent_dropout_mask", lambda h: ops.convert_to_tensor(recurrent_mask))
    x = _x(13)
    got = _np(layer(x, training=True))
    w = weights_of(layer)
    for i in range(B):
        h, m = np.zeros(N), np.eye(N)
        for t in range(T):
            _, h, m = ref.rum_step(
                x[i, t] * input_mask[i], h, m, w, lambda_=1, eta=1.0, recurrent_mask=recurrent_mask[i]
            )
            np.testing.assert_allclose(got[i, t], h, atol=5e-5, rtol=1e-4)
    plain = keras.layers.RNN(layer.cell, return_sequences=True)
    np.testing.assert_allclose(_np(plain(x, training=True)), got, atol=1e-5)
    np.testing.assert_allclose(_np(layer(x)), _np(plain(x)), atol=1e-5)  # inference: no dropout
