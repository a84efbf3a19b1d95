"""EUNN and GORU cells: unitarity, the NumPy reference, the official code's values,
parameter counts, initialisation, gradients and serialisation."""

import itertools
import json
import math
import os

import keras
import numpy as np
import pytest
from keras import ops

import numpy_eunn_reference as ref
import rum_tf
from cell_helpers import (
    assert_config_round_trip,
    finite_differences,
    gradients,
    randomize,
    weight_gradients,
    weights_of,
)
from rum_tf.baselines import EUNNCell, EUNNLayout, GORUCell, eunn_param_count, eunn_transition
from rum_tf.baselines import eunn as eunn_module

B, D = 3, 4


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _randomize_angles(cell, rng):
    """θ, φ, ω uniform in [-π, π], the other weights normal (conftest.randomize)."""
    randomize(cell, rng)
    for w in cell.weights:
        if w.name.startswith(("theta", "phi", "omega")):
            w.assign(rng.uniform(-np.pi, np.pi, w.shape).astype(np.float32))


def _compiled(fn):
    """fn, jitted under JAX: its eager ops compile one by one, slow over many small configs."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


# The helpers randomize every weight: zeros spare the initializers' work.
FAST_INIT = dict(angle_initializer="zeros", input_kernel_initializer="zeros")


def _eunn(n, capacity=2, fft=False, complex=False, seed=0):
    cell = EUNNCell(n, capacity=capacity, fft=fft, complex=complex, **FAST_INIT)
    cell.build((None, D))
    _randomize_angles(cell, np.random.default_rng(seed))
    return cell


def _goru(n, capacity=2, fft=False, seed=0):
    cell = GORUCell(n, capacity=capacity, fft=fft, recurrent_kernel_initializer="zeros", **FAST_INIT)
    cell.build((None, D))
    _randomize_angles(cell, np.random.default_rng(seed))
    return cell


def _complex_rows(x, n):
    return x[:, :n] + 1j * x[:, n:]


# --- the transition -----------------------------------------------------------------

NORM_CONFIGS = [
    (n, capacity, fft, complex)
    for n in (7, 8)
    for capacity, fft in [(2, False), (3, False), (2, True)]
    for complex in (False, True)
] + [(n, 2, True, complex) for n in (12, 33) for complex in (False, True)]


@pytest.mark.parametrize("n,capacity,fft,complex", NORM_CONFIGS)
def test_transition_preserves_the_norm_over_100_steps(n, capacity, fft, complex):
    cell = _eunn(n, capacity, fft, complex)
    rng = np.random.default_rng(1)
    width = 2 * n if complex else n
    h0 = rng.normal(size=(8, width)) * rng.uniform(0.1, 10.0, size=(8, 1))
    norm0 = np.linalg.norm(h0, axis=1)
    coefficients = cell.transition_coefficients()  # computed once: 100 steps stay quick
    step = _compiled(lambda h, c: cell.transition(h, c))
    h = ops.convert_to_tensor(h0.astype(np.float32))
    worst = 0.0
    for _ in range(100):
        h = step(h, coefficients)
        worst = max(worst, np.max(np.abs(np.linalg.norm(_np(h), axis=1) / norm0 - 1.0)))
    assert worst < 1e-5, worst


MATRIX_CONFIGS = (
    [
        (n, capacity, fft, complex)
        for n in (1, 2, 3, 6, 9)
        for capacity, fft in [(1, False), (2, False), (3, False), (2, True)]
        for complex in (False, True)
    ]
    + [(n, 2, True, complex) for n in (8, 12, 17) for complex in (False, True)]
    + [(5, 4, False, True)]
)


@pytest.mark.parametrize("n,capacity,fft,complex", MATRIX_CONFIGS)
def test_transition_equals_the_numpy_matrix(n, capacity, fft, complex):
    cell = _eunn(n, capacity, fft, complex, seed=n + capacity)
    u = ref.eunn_matrix(n, capacity, fft, weights_of(cell))
    np.testing.assert_allclose(u.conj().T @ u, np.eye(n), atol=1e-12)  # the reference is unitary too
    rng = np.random.default_rng(2)
    if complex:
        h = rng.normal(size=(B, 2 * n)).astype(np.float32)
        got = _complex_rows(_np(_compiled(cell.transition)(h)), n)
        want = _complex_rows(h.astype(np.float64), n) @ u.T
    else:
        assert np.abs(u.imag).max() == 0.0
        h = rng.normal(size=(B, n)).astype(np.float32)
        got, want = _np(_compiled(cell.transition)(h)), h @ u.real.T
    np.testing.assert_allclose(got, want, atol=2e-6)
    # The same U as one matrix, the form rum_tf.Recurrent applies at every step.
    as_matrix = _np(cell.transition(h, matrix=cell.transition_matrix()))
    np.testing.assert_allclose(_complex_rows(as_matrix, n) if complex else as_matrix, want, atol=2e-6)


def test_layouts_pair_units_as_the_official_patterns():
    tunable = EUNNLayout(7, capacity=3)
    assert [[(lo, hi) for lo, hi, _ in layer] for layer in tunable.pairs] == [
        [(0, 1), (2, 3), (4, 5)],
        [(1, 2), (3, 4), (5, 6)],
        [(0, 1), (2, 3), (4, 5)],
    ]
    assert tunable.param_shapes == [("theta_0", (2, 3)), ("theta_1", (1, 3))]
    for n in (2, 5, 8, 12, 13, 16, 100):
        layout = EUNNLayout(n, fft=True)
        assert layout.num_layers == math.ceil(math.log2(n))
        for k, layer in enumerate(layout.pairs):
            assert {hi - lo for lo, hi, _ in layer} == {2 ** (layout.num_layers - 1 - k)}
            units = [u for lo, hi, _ in layer for u in (lo, hi)]
            assert len(units) == len(set(units)) and max(units) < n
        angles = sorted(a for layer in layout.pairs for _, _, a in layer)
        assert angles == list(range(layout.num_angles))
    # Power of two: every unit is paired in every layer.
    assert all(len(layer) == 8 for layer in EUNNLayout(16, fft=True).pairs)


# --- the cells against the reference and the official code --------------------------


@pytest.mark.parametrize(
    "n,capacity,fft,complex", [(5, 2, False, False), (6, 3, False, True), (8, 2, True, False), (6, 2, True, True)]
)
def test_eunn_cell_matches_reference(n, capacity, fft, complex):
    cell = _eunn(n, capacity, fft, complex, seed=3)
    w = weights_of(cell)
    xs = np.random.default_rng(4).normal(size=(B, 5, D)).astype(np.float32)
    h = cell.get_initial_state(batch_size=B)
    want = np.zeros((B, cell.state_size[0]))
    for t in range(xs.shape[1]):
        out, h = cell(xs[:, t], h)
        want = np.stack([ref.eunn_step(xs[i, t], want[i], w, n, capacity, fft, complex) for i in range(B)])
        np.testing.assert_allclose(_np(out), want, atol=2e-5, rtol=1e-4)
        np.testing.assert_array_equal(_np(out), _np(h[0]))


@pytest.mark.parametrize("n,capacity,fft", [(5, 2, False), (6, 1, False), (8, 2, True), (6, 2, True)])
def test_goru_cell_matches_reference(n, capacity, fft):
    cell = _goru(n, capacity, fft, seed=5)
    w = weights_of(cell)
    xs = np.random.default_rng(6).normal(size=(B, 5, D)).astype(np.float32)
    h = cell.get_initial_state(batch_size=B)
    want = np.zeros((B, n))
    for t in range(xs.shape[1]):
        out, h = cell(xs[:, t], h)
        want = np.stack([ref.goru_step(xs[i, t], want[i], w, n, capacity, fft) for i in range(B)])
        np.testing.assert_allclose(_np(out), want, atol=2e-5, rtol=1e-4)


# rum_tf.Recurrent (what --model=eunn / goru build) builds U once per sequence.
LAYER_CELLS = {
    "eunn": lambda: _eunn(5, 2, seed=13),
    "eunn complex fft": lambda: _eunn(6, fft=True, complex=True, seed=14),
    "goru": lambda: _goru(5, 3, seed=15),
}


def _reference_sequence(cell, weights, x):
    """Outputs [T, S] of the NumPy cell over one example's x [T, D]."""
    n = cell.units
    if isinstance(cell, GORUCell):
        step = lambda x_t, h: ref.goru_step(x_t, h, weights, n, cell.capacity, cell.fft)  # noqa: E731
    else:
        step = lambda x_t, h: ref.eunn_step(x_t, h, weights, n, cell.capacity, cell.fft, cell.complex)  # noqa: E731
    h, outputs = np.zeros(cell.state_size[0]), []
    for x_t in x:
        h = step(x_t, h)
        outputs.append(h)
    return np.stack(outputs)


@pytest.mark.parametrize("name", sorted(LAYER_CELLS))
def test_recurrent_layer_matches_the_reference_values_and_gradients(name):
    cell = LAYER_CELLS[name]()
    layer = rum_tf.Recurrent(cell, return_sequences=True)
    x = np.random.default_rng(16).normal(size=(2, 4, D)).astype(np.float32)
    outputs = _np(layer(x))
    w = weights_of(cell)
    want = np.stack([_reference_sequence(cell, w, x_i) for x_i in x])
    np.testing.assert_allclose(outputs, want, atol=2e-5, rtol=1e-4)
    weigh = np.random.default_rng(17).normal(size=outputs.shape)
    got = weight_gradients(layer, lambda y: ops.sum(y * ops.cast(weigh, y.dtype)), x)
    assert set(got) == set(w)
    names = list(got)

    def reference_loss(*arrays):
        weights = dict(w, **dict(zip(names, arrays)))
        return sum(np.sum(weigh[i] * _reference_sequence(cell, weights, x[i])) for i in range(len(x)))

    for weight, numeric in zip(names, finite_differences(reference_loss, *[w[n] for n in names])):
        np.testing.assert_allclose(got[weight], numeric, atol=2e-4, rtol=1e-3, err_msg=weight)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="counts eager steps: JAX traces the step once")
def test_recurrent_layer_applies_the_layers_once_per_sequence(monkeypatch):
    calls = []
    apply = eunn_module.eunn_apply
    monkeypatch.setattr(eunn_module, "eunn_apply", lambda *args: calls.append(1) or apply(*args))
    x = np.random.default_rng(18).normal(size=(2, 6, D)).astype(np.float32)
    for make in (lambda: _eunn(5), lambda: _goru(5)):
        calls.clear()
        keras.layers.RNN(make(), return_sequences=True)(x)
        assert len(calls) >= 6  # the plain RNN: every step applies U's layers
        calls.clear()
        rum_tf.Recurrent(make(), return_sequences=True)(x)
        assert len(calls) == 1  # built into a matrix once, then one matmul a step


# One step of the official cells (RUM-Tensorflow baselineModels/EUNN.py and GORU.py,
# run under tf.compat.v1) on the deterministic weights of `_official_weight`, for
# configurations where that code's transition is orthogonal/unitary (docs/BASELINES.md).
OFFICIAL_NAMES = ["U", "U_re", "U_im", "W_r", "W_g", "bias_r", "bias_g", "bias_c", "modReLUBias"]
OFFICIAL_NAMES += ["theta_0", "theta_1", "phi_0", "phi_1", "omega"]
OFFICIAL_STEPS = {
    ("eunn", 5, 3, False, False): [
        [0.1877821, 1.2703571, 0.8149685, 0.4585056, -0.4893558],
        [0.442428, 1.151054, 0.624315, 0.2967085, -0.3260429],
    ],
    ("eunn", 4, 2, False, True): [
        [0.6623619, -0.3057769, -0.448698, -0.7397609, 1.2124614, -0.1942418, -2.1641657, -0.2714658],
        [-0.795885, -1.0118132, 1.311963, -0.1455101, 0.2475408, -0.8231343, 1.0141407, 0.0960751],
    ],
    ("eunn", 7, 4, False, True): [
        [
            -0.0126208,
            -0.3465255,
            -1.4811513,
            0.2643322,
            0.1496989,
            0.5772447,
            0.4241312,
            -0.6418341,
            -0.5782262,
            -1.2129738,
            -0.3702317,
            0.2234035,
            0.7733051,
            0.3297383,
        ],
        [
            -0.2249892,
            0.1589758,
            1.0457736,
            -0.1380641,
            0.020435,
            -0.5584237,
            -0.7281528,
            0.7425732,
            0.5638104,
            1.4002861,
            0.3094653,
            -0.2574126,
            -0.9365866,
            -0.4026901,
        ],
    ],
    ("eunn", 8, 1, True, False): [
        [-0.0, 1.0224983, 1.9851508, 0.0439736, 0.0, 0.2585251, 0.9872642, 1.206359],
        [0.6587143, -1.385643, -2.0007787, 0.0684623, 0.3517792, -0.4688292, -0.8892805, -1.0517039],
    ],
    ("goru", 5, 2, False, False): [
        [0.2642954, -0.081713, -0.2735482, -0.4178662, -0.0964537],
        [0.4991354, -0.2070495, -1.0594946, -0.2977066, 0.4801104],
    ],
    ("goru", 7, 1, False, False): [
        [0.4610705, 0.1837105, -0.2475576, -0.5187814, 0.1038383, 0.4702007, 0.0726178],
        [-0.4485404, -0.4992152, -0.2250767, 0.5845739, -0.1774095, -0.4514253, -0.388291],
    ],
    ("goru", 4, 2, True, False): [
        [0.2364941, 0.0112491, -0.1740933, 0.0142539],
        [0.3712806, 0.2062003, 0.3458641, -0.4122119],
    ],
}


def _wave(shape, phase, scale):
    n = int(np.prod(shape))
    return (scale * np.sin(1.3 * np.arange(n) + phase)).reshape(shape).astype(np.float32)


def _official_weight(name, shape):
    scale = np.pi if name.startswith(("theta", "phi", "omega")) else 0.5
    return _wave(shape, 0.7 * OFFICIAL_NAMES.index(name), scale)


@pytest.mark.parametrize("key", list(OFFICIAL_STEPS))
def test_cells_reproduce_the_official_code(key):
    kind, n, capacity, fft, complex = key
    d = 3
    if kind == "eunn":
        cell = EUNNCell(n, capacity=capacity, fft=fft, complex=complex, **FAST_INIT)
        kernel = ["U_re", "U_im"] if complex else ["U"]
        official = {"input_kernel": kernel, "modrelu_bias": ["modReLUBias"]}
    else:
        cell = GORUCell(n, capacity=capacity, fft=fft, recurrent_kernel_initializer="zeros", **FAST_INIT)
        official = {"input_kernel": ["U"], "recurrent_kernel": ["W_r", "W_g"], "reset_bias": ["bias_r"]}
        official.update(update_bias=["bias_g"], modrelu_bias=["bias_c"])
    cell.build((None, d))
    for w in cell.weights:
        names = official.get(w.name, [w.name])  # kernels concatenate official variables
        shape = (w.shape[0], w.shape[1] // len(names)) if len(names) > 1 else tuple(w.shape)
        w.assign(np.concatenate([_official_weight(name, shape) for name in names], axis=-1))
    x = _wave((2, d), 14.0, 1.0)
    h = _wave((2, n), 14.7, 0.8)
    if complex:
        h = np.concatenate([h, _wave((2, n), 15.4, 0.8)], axis=1)
    out = _compiled(lambda x, h: cell(x, [h])[0])(x, h)
    np.testing.assert_allclose(_np(out), np.array(OFFICIAL_STEPS[key]), atol=2e-6)


# --- parameter counts -----------------------------------------------------------------


def official_transition_count(n, capacity, fft, complex):
    """The official code's angle count, written as closed-form sums."""
    if fft:
        k = math.ceil(math.log2(n)) if n > 1 else 0
        angles = sum((n // 2**s) * 2 ** (s - 1) + max(0, n % 2**s - 2 ** (s - 1)) for s in range(1, k + 1))
    else:
        angles = math.ceil(capacity / 2) * (n // 2) + (capacity // 2) * ((n - 1) // 2)
    return 2 * angles + n if complex else angles


# Transition sizes printed by the official code itself (tf.compat.v1), for spot checks.
OFFICIAL_COUNTS = {
    (2, 2, False, False): 1,
    (4, 2, False, False): 3,
    (5, 1, False, True): 9,
    (7, 4, False, True): 31,
    (12, 3, False, False): 17,
    (12, 3, False, True): 46,
    (6, 2, True, False): 7,
    (9, 2, True, False): 13,
    (9, 2, True, True): 35,
    (12, 2, True, False): 20,
    (12, 2, True, True): 52,
    (16, 2, True, False): 32,
    (16, 2, True, True): 80,
}

COUNT_CONFIGS = sorted(
    set(itertools.product((1, 2, 3, 7, 8, 12, 100, 128), (1, 2, 3, 4), (False,), (False, True)))
    | set(itertools.product((2, 3, 7, 8, 12, 100, 128), (2,), (True,), (False, True)))
    | set(OFFICIAL_COUNTS)
)


@pytest.mark.parametrize("n,capacity,fft,complex", COUNT_CONFIGS)
def test_parameter_counts_equal_the_official_formulas(n, capacity, fft, complex):
    transition = official_transition_count(n, capacity, fft, complex)
    if (n, capacity, fft, complex) in OFFICIAL_COUNTS:
        assert transition == OFFICIAL_COUNTS[(n, capacity, fft, complex)]
    if fft and n & (n - 1) == 0:
        assert transition == (2 if complex else 1) * math.log2(n) * n // 2 + (n if complex else 0)
    assert eunn_param_count(n, capacity, fft, complex) == transition
    if n > 12 and capacity > 2:
        return  # building cells is the slow part; the smaller ones cover the cell counts
    zeros = dict(angle_initializer="zeros", input_kernel_initializer="zeros")
    cell = EUNNCell(n, capacity=capacity, fft=fft, complex=complex, **zeros)
    cell.build((None, D))
    # input kernel (W, or W_re and W_im) + modReLU bias + transition
    assert cell.count_params() == (2 if complex else 1) * D * n + n + transition
    if not complex:
        goru = GORUCell(n, capacity=capacity, fft=fft, recurrent_kernel_initializer="zeros", **zeros)
        goru.build((None, D))
        # U [d, 3N], W_r and W_g [N, N], three biases, transition
        assert goru.count_params() == 3 * D * n + 2 * n * n + 3 * n + transition


# --- initialisation, gradients, serialisation ----------------------------------------


def test_official_initialisation():
    n = 64
    cell = EUNNCell(n, capacity=4, complex=True)
    cell.build((None, D))
    w = weights_of(cell)
    assert w["input_kernel"].shape == (D, 2 * n) and np.abs(w["input_kernel"]).max() <= 0.01
    np.testing.assert_array_equal(w["modrelu_bias"], np.zeros(n))
    for name in ("theta_0", "theta_1", "phi_0", "phi_1", "omega"):
        assert np.abs(w[name]).max() <= np.pi and w[name].std() > 1.0, name  # uniform in [-π, π]
    assert not np.allclose(w["theta_0"], w["phi_0"])  # equal shapes, separate draws
    goru = GORUCell(n)
    goru.build((None, D))
    g = weights_of(goru)
    assert np.abs(g["input_kernel"]).max() <= 0.01 and g["input_kernel"].shape == (D, 3 * n)
    assert np.abs(g["recurrent_kernel"]).max() <= 0.01 and g["recurrent_kernel"].std() > 0.004
    assert not np.allclose(g["recurrent_kernel"][:, :n], g["recurrent_kernel"][:, n:])
    np.testing.assert_array_equal(g["reset_bias"], np.full(n, 2.0))
    np.testing.assert_array_equal(g["modrelu_bias"], np.full(n, 2.0))
    limit = math.sqrt(3.0 / n)  # TF1's default glorot_uniform on a vector of size N
    assert np.abs(g["update_bias"]).max() <= limit and g["update_bias"].std() > limit / 3
    assert sorted(g) == sorted(
        ["input_kernel", "recurrent_kernel", "reset_bias", "update_bias", "modrelu_bias", "theta_0", "theta_1"]
    )


def test_cells_with_default_initializers_differ():
    cells = [GORUCell(6), GORUCell(6), EUNNCell(6), EUNNCell(6)]
    for cell in cells:
        cell.build((None, D))
    for a, b in (cells[:2], cells[2:]):
        for name, value in weights_of(a).items():
            if value.std() > 0:  # random initializers: not the constant biases
                assert not np.allclose(value, weights_of(b)[name]), name


def test_seeded_initializers_are_reproducible():
    def angles():
        cell = EUNNCell(6, complex=True, angle_initializer=keras.initializers.RandomUniform(-np.pi, np.pi, seed=3))
        cell.build((None, D))
        return weights_of(cell)

    a, b = angles(), angles()
    assert all(np.array_equal(a[k], b[k]) for k in ("theta_0", "theta_1", "phi_0", "phi_1", "omega"))
    assert not np.allclose(a["theta_0"], a["phi_0"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: _eunn(6, 3, complex=True),
        lambda: _eunn(7, fft=True, complex=True),
        lambda: _eunn(5),
        lambda: _goru(5, fft=True),
    ],
)
def test_gradients_are_finite(make):
    cell = make()
    n = cell.state_size[0]

    def step(x, h):
        out, _ = cell(x, [h])
        return out

    for scale in (0.0, 1.0):  # zero input and state: the modReLU norm is 0
        x = scale * np.random.default_rng(7).normal(size=(B, D))
        h = scale * np.random.default_rng(8).normal(size=(B, n))
        for g in gradients(step, x, h):
            assert np.isfinite(g).all()


def _model(cell, t=6):
    inputs = keras.Input((t, D))
    hidden = keras.layers.RNN(cell, return_sequences=True)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


@pytest.mark.parametrize("make", [lambda: EUNNCell(6, complex=True), lambda: GORUCell(5, capacity=3)])
def test_a_training_step_gives_finite_weights(make):
    model = _model(make())
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
    rng = np.random.default_rng(9)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(rng.normal(size=(B, 6, D)), rng.normal(size=(B, 6, 3)))
    after = model.get_weights()
    assert np.isfinite(loss)
    assert all(np.isfinite(w).all() for w in after)
    assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) == len(after)  # every weight trained


CONFIG_MAKERS = [
    lambda: EUNNCell(6, capacity=3, complex=True),
    lambda: EUNNCell(9, fft=True, input_kernel_initializer=keras.initializers.RandomUniform(-0.1, 0.1, seed=4)),
    lambda: GORUCell(8, capacity=4, update_bias_initializer="zeros"),
    lambda: GORUCell(8, fft=True),
]


@pytest.mark.parametrize("make", CONFIG_MAKERS)
def test_config_round_trip(make):
    assert_config_round_trip(make())


@pytest.mark.parametrize("make", [lambda: EUNNCell(6, capacity=3, complex=True), lambda: GORUCell(5, fft=True)])
def test_save_load_round_trip(make, tmp_path):
    model = _model(make())
    randomize(model, np.random.default_rng(10), scale=0.5)
    x = np.random.default_rng(11).normal(size=(B, 6, D)).astype(np.float32)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))
    as_json = lambda layer: json.loads(json.dumps(layer.get_config()))
    assert as_json(loaded.layers[1]) == as_json(model.layers[1])


def test_sizes_and_initial_state():
    for cell, size in [(EUNNCell(5), 5), (EUNNCell(5, complex=True), 10), (GORUCell(5), 5)]:
        assert cell.state_size == [size] and cell.output_size == size
        state = cell.get_initial_state(batch_size=2)
        assert len(state) == 1 and _np(state[0]).shape == (2, size) and not _np(state[0]).any()
    assert EUNNCell(100, fft=True).num_layers == 7 and EUNNCell(100, capacity=3).num_layers == 3


@pytest.mark.parametrize("kwargs", [dict(units=0), dict(units=2.5), dict(units=4, capacity=0)])
def test_bad_arguments_raise(kwargs):
    for cls in (EUNNCell, GORUCell):
        with pytest.raises(ValueError):
            cls(**kwargs)


def test_mixed_precision_keeps_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        for cell in (EUNNCell(6, complex=True), GORUCell(6, fft=True)):
            assert cell.compute_dtype == "float32"
            out, _ = cell(np.ones((2, D), np.float16), cell.get_initial_state(batch_size=2))
            assert _np(out).dtype == np.float32 and np.isfinite(_np(out)).all()
            # The layer too: its transition matrix reads the angles outside the cell's call.
            out = rum_tf.Recurrent(cell)(np.ones((2, 3, D), np.float16))
            assert _np(out).dtype == np.float32 and np.isfinite(_np(out)).all()
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("complex", [False, True])
def test_the_functional_transition_equals_the_cell(complex):
    cell = _eunn(8, fft=True, complex=complex)
    width = 16 if complex else 8
    h = np.random.default_rng(12).normal(size=(B, width)).astype(np.float32)
    w = {v.name: v for v in cell.weights}
    phi = w["phi_0"] if complex else None
    got = eunn_transition(h, cell.layout, w["theta_0"], phi, w.get("omega"))
    np.testing.assert_allclose(_np(got), _np(cell.transition(h)), atol=1e-6)
