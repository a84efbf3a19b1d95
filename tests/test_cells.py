"""RUMCell, LayerNormLSTMCell and FastSlowCell against the NumPy reference (SPEC §2-§3)."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

import numpy_reference as ref
from cell_helpers import assert_config_round_trip, gradients, randomize, weights_of
from rum_tf import ARUMCell, FastSlowCell, LayerNormLSTMCell, RUMCell

B, T, D, N = 3, 6, 5, 7
# Largest |cell - reference| per RUM grid config; conftest prints the maximum after the run.
MAX_DIFF = {}


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _run_cell(cell, xs, training=False):
    """Step a cell through xs [B, T, d] eagerly, returning outputs [B, T, out] and states."""
    states = cell.get_initial_state(batch_size=xs.shape[0])
    outs = []
    for t in range(xs.shape[1]):
        out, states = cell(xs[:, t], states, training=training)
        outs.append(_np(out))
    return np.stack(outs, 1), [_np(s) for s in states]


def _built_rum(weight_seed=0, **kwargs):
    cell = RUMCell(N, **kwargs)
    cell.build((None, D))
    randomize(cell, np.random.default_rng(weight_seed))
    return cell


GRID = list(itertools.product([0, 1], [None, 0.1, 2.0], [False, True], [None, 0.9], [True, False]))


@pytest.mark.parametrize("lambda_,eta,ln,keep,update_gate", GRID)
def test_rum_cell_matches_numpy_reference(lambda_, eta, ln, keep, update_gate):
    kwargs = dict(lambda_=lambda_, eta=eta, zoneout_keep_h=keep, update_gate=update_gate)
    cell = _built_rum(use_layer_norm=ln, **kwargs)
    xs = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
    got, states = _run_cell(cell, xs)
    w = weights_of(cell)
    for i in range(B):
        want, h, m = ref.rum_sequence(xs[i], w, layer_norm_on=ln, **kwargs)
        diff = np.max(np.abs(got[i] - want))
        MAX_DIFF[(lambda_, eta, ln, keep, update_gate)] = max(
            diff, MAX_DIFF.get((lambda_, eta, ln, keep, update_gate), 0)
        )
        np.testing.assert_allclose(got[i], want, atol=5e-5, rtol=1e-4)
        np.testing.assert_allclose(states[0][i], h, atol=5e-5, rtol=1e-4)
        if lambda_ == 1:
            # The memory travels as M - I.
            np.testing.assert_allclose(states[1][i].reshape(N, N), m - np.eye(N), atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softsign"])
def test_rum_cell_other_options_match_reference(activation):
    kwargs = dict(activation=activation, eta=1.0)
    cell = _built_rum(track_angle=True, use_embedding_bias=True, **kwargs)
    assert cell.output_size == N + 1 and cell.embedding_bias is not None
    xs = np.random.default_rng(2).normal(size=(B, T, D)).astype(np.float32)
    got, _ = _run_cell(cell, xs)
    for i in range(B):
        want, _, _ = ref.rum_sequence(xs[i], weights_of(cell), track_angle=True, **kwargs)
        np.testing.assert_allclose(got[i], want, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("eta", [0.3, 2.0])
def test_state_norm_is_eta(eta):
    cell = _built_rum(eta=eta)
    xs = np.random.default_rng(3).normal(size=(B, T, D)).astype(np.float32)
    got, _ = _run_cell(cell, xs)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), eta, rtol=1e-5)


def test_associative_memory_stays_orthogonal():
    cell = _built_rum(lambda_=1)
    xs = np.random.default_rng(4).normal(size=(B, 40, D)).astype(np.float32)
    _, states = _run_cell(cell, xs)
    m = states[1].reshape(B, N, N).astype(np.float64) + np.eye(N)
    np.testing.assert_allclose(m @ np.swapaxes(m, 1, 2), np.broadcast_to(np.eye(N), m.shape), atol=1e-4)


def test_initial_state_and_sizes():
    cell = RUMCell(N, lambda_=1)
    h, m = cell.get_initial_state(batch_size=2)
    assert _np(h).shape == (2, N) and not _np(h).any()
    # The memory is carried as M - I: zeros are M_0 = I.
    assert _np(m).shape == (2, N * N) and not _np(m).any()
    assert cell.state_size == [N, N * N] and RUMCell(N).state_size == [N]
    assert isinstance(ARUMCell(N), RUMCell) and ARUMCell(N).lambda_ == 1


def test_official_initialisation():
    cell = RUMCell(N)
    cell.build((None, D))
    k = _np(cell.gate_kernel)
    assert k.shape == (D + N, 2 * N)
    for block in (k[:, :N], k[:, N:]):  # each half has orthonormal columns
        np.testing.assert_allclose(block.T @ block, np.eye(N), atol=1e-5)
    assert not np.allclose(k[:, :N], k[:, N:])
    np.testing.assert_array_equal(_np(cell.gate_bias), np.ones(2 * N))
    e = _np(cell.embedding_kernel)
    np.testing.assert_allclose(e @ e.T, np.eye(D), atol=1e-5)  # d < N: orthonormal rows
    assert cell.embedding_bias is None
    assert cell.gate_kernel.trainable


@pytest.mark.parametrize("ln", [False, True])
def test_trainable_rot_false_freezes_gate_kernel_and_bias(ln):
    frozen = RUMCell(N, trainable_rot=False, use_layer_norm=ln)
    frozen.build((None, D))
    # The later official code passes trainable=False to the whole gate layer: kernel and bias.
    assert not frozen.gate_kernel.trainable and not frozen.gate_bias.trainable
    assert frozen.embedding_kernel.trainable
    assert {v.name for v in frozen.non_trainable_weights} == {"gate_kernel", "gate_bias"}


@pytest.mark.parametrize("ln", [False, True])
def test_update_gate_false_has_only_the_r_half_of_the_gates(ln):
    cell = RUMCell(N, update_gate=False, use_layer_norm=ln)
    cell.build((None, D))
    assert tuple(cell.gate_kernel.shape) == (D + N, N) and tuple(cell.gate_bias.shape) == (N,)
    # The official cell: r = [x; h] W_r + b_r, x W_e, and LN weights for r and the candidate.
    official = (D + N) * N + N + D * N + (2 * N + 2 * N if ln else 0)
    assert cell.count_params() == official
    k = _np(cell.gate_kernel)
    np.testing.assert_allclose(k.T @ k, np.eye(N), atol=1e-5)  # the r block is still orthogonal


def test_ln_lstm_draws_input_and_state_rows_separately():
    # The official LNLSTM draws W_xh [d, 4N] and W_hh [N, 4N] separately; rum_tf keeps them as
    # the rows of one kernel, each block drawn by its own copy of the initializer (seed, seed + 1).
    cell = LayerNormLSTMCell(N, kernel_initializer=keras.initializers.Orthogonal(seed=3))
    cell.build((None, D))
    k = _np(cell.kernel)
    np.testing.assert_allclose(k[:D], _np(keras.initializers.Orthogonal(seed=3)((D, 4 * N))), atol=1e-6)
    np.testing.assert_allclose(k[D:], _np(keras.initializers.Orthogonal(seed=4)((N, 4 * N))), atol=1e-6)
    default = LayerNormLSTMCell(N)
    default.build((None, D))
    k = _np(default.kernel)
    for block in (k[:D], k[D:]):  # each block has orthonormal rows (d, N < 4N)
        np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-5)
    assert np.abs(k[:D] @ k[D:].T).max() > 0.05  # one draw over [d+N, 4N] would make this 0


@pytest.mark.parametrize(
    "kwargs", [dict(lambda_=2), dict(lambda_=0.5), dict(eta=0.0), dict(eta=-1.0), dict(zoneout_keep_h=0.0)]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        RUMCell(N, **kwargs)


def test_arum_refuses_lambda_0():
    with pytest.raises(ValueError):
        ARUMCell(N, lambda_=0)


def test_zoneout_in_training_picks_new_or_old_per_unit():
    keep = 0.5
    cell = _built_rum(zoneout_keep_h=keep, seed=1)  # seeded noise: the rate check is deterministic
    nozone = _built_rum()  # same weights (same weight_seed), no zoneout
    x = np.random.default_rng(5).normal(size=(200, D)).astype(np.float32)
    h0 = np.random.default_rng(6).normal(size=(200, N)).astype(np.float32)
    new = _np(nozone(x, [h0])[0])
    out = _np(cell(x, [h0], training=True)[0])
    is_new = np.isclose(out, new, atol=1e-6)
    is_old = np.isclose(out, h0, atol=1e-6)
    assert np.all(is_new | is_old)
    assert abs(is_new.mean() - keep) < 0.05  # 1,400 Bernoulli(0.5) draws
    inference = _np(cell(x, [h0], training=False)[0])
    np.testing.assert_allclose(inference, keep * new + (1 - keep) * h0, atol=1e-5)


def test_gradients_are_finite_on_zero_input():
    cell = _built_rum(lambda_=1, eta=1.0, use_layer_norm=True)
    x = np.zeros((2, D), np.float32)
    h, m = cell.get_initial_state(batch_size=2)

    def fn(x, h):
        return cell(x, [h, m])[0]

    for g in gradients(fn, x, _np(h)):
        assert np.isfinite(g).all()


def _built_ln_lstm(units, d, seed, **kwargs):
    cell = LayerNormLSTMCell(units, **kwargs)
    cell.build((None, d))
    randomize(cell, np.random.default_rng(seed))
    return cell


@pytest.mark.parametrize("keeps", [(0.9, 0.5), (None, None)])
def test_ln_lstm_matches_reference(keeps):
    cell = _built_ln_lstm(N, D, 7, zoneout_keep_h=keeps[0], zoneout_keep_c=keeps[1])
    xs = np.random.default_rng(8).normal(size=(B, T, D)).astype(np.float32)
    got, _ = _run_cell(cell, xs)
    w = weights_of(cell)
    for i in range(B):
        h = c = np.zeros(N)
        for t in range(T):
            h, c = ref.ln_lstm_step(xs[i, t], h, c, w, keep_h=keeps[0], keep_c=keeps[1])
            np.testing.assert_allclose(got[i, t], h, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("slow", ["lstm", "rum"])
@pytest.mark.parametrize("n_fast", [2, 3])
def test_fast_slow_matches_reference(slow, n_fast):
    nf, ns = 6, 8
    rng = np.random.default_rng(9)
    fast = [LayerNormLSTMCell(nf) for _ in range(n_fast)]
    rum_kwargs = dict(eta=1.0, layer_norm_on=True, zoneout_keep_h=0.9)
    slow_cell = (
        LayerNormLSTMCell(ns) if slow == "lstm" else RUMCell(ns, eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9)
    )
    cell = FastSlowCell(fast, slow_cell, keep_prob=0.65)
    cell.build((None, D))
    randomize(cell, rng)
    xs = rng.normal(size=(B, T, D)).astype(np.float32)
    got, _ = _run_cell(cell, xs)
    fw = [weights_of(c) for c in fast]
    sw = weights_of(slow_cell)
    for i in range(B):
        want = ref.fast_slow_sequence(xs[i], fw, sw, n_fast, None if slow == "lstm" else rum_kwargs)
        np.testing.assert_allclose(got[i], want, atol=5e-5, rtol=1e-4)


def test_fast_slow_dropout_only_in_training():
    cell = FastSlowCell([LayerNormLSTMCell(4), LayerNormLSTMCell(4)], RUMCell(5, eta=1.0), seed=3)
    x = np.random.default_rng(10).normal(size=(8, D)).astype(np.float32)
    states = cell.get_initial_state(batch_size=8)
    a = _np(cell(x, states)[0])
    np.testing.assert_array_equal(a, _np(cell(x, states)[0]))
    t1 = _np(cell(x, states, training=True)[0])
    t2 = _np(cell(x, states, training=True)[0])
    assert not np.allclose(t1, a) and not np.allclose(t1, t2)
    assert np.mean(t1 == 0) > 0.2  # the output dropout (keep 0.65) zeroes about a third


@pytest.mark.parametrize(
    "make",
    [
        lambda: RUMCell(N, lambda_=1, eta=0.5, use_layer_norm=True, zoneout_keep_h=0.9, track_angle=True),
        lambda: LayerNormLSTMCell(N),
        lambda: FastSlowCell([LayerNormLSTMCell(4), LayerNormLSTMCell(4)], RUMCell(5, eta=1.0)),
    ],
)
def test_config_round_trip(make):
    assert_config_round_trip(make())


def test_mixed_precision_keeps_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        cell = RUMCell(N, lambda_=1, eta=1.0)
        assert cell.compute_dtype == "float32"
        x = np.zeros((2, D), np.float16)
        out, states = cell(x, cell.get_initial_state(batch_size=2))
        assert _np(out).dtype == np.float32 and np.isfinite(_np(out)).all()
    finally:
        keras.config.set_dtype_policy("float32")
