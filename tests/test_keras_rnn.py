"""The rum_tf cells inside plain `keras.layers.RNN`: training noise, eager and compiled."""

import keras
import numpy as np
import pytest
from keras import ops

from cell_helpers import NoiseProbe, backend, randomize
from rum_tf import FastSlowCell, LayerNormLSTMCell, RUMCell

B, T, D, N = 16, 12, 5, 8


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _x(seed=0, t=T):
    return np.random.default_rng(seed).normal(size=(B, t, D)).astype(np.float32)


def _call_training(layer, x, jit):
    """layer(x, training=True): eagerly, or compiled (tf.function with XLA, or jax.jit)."""
    if not jit:
        return _np(layer(x, training=True))
    if backend() == "tensorflow":
        import tensorflow as tf

        return _np(tf.function(lambda x: layer(x, training=True), jit_compile=True)(x))
    import jax

    @jax.jit
    def run(trainable, non_trainable, x):
        return layer.stateless_call(trainable, non_trainable, x, training=True)

    out, non_trainable = run(
        [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables], x
    )
    for variable, value in zip(layer.non_trainable_variables, non_trainable):
        variable.assign(value)  # the seed generators advance, as in fit
    return _np(out)


@pytest.mark.parametrize("jit", [False, True])
def test_plain_rnn_gives_fresh_noise_at_every_step(jit):
    layer = keras.layers.RNN(NoiseProbe(seed=1), return_sequences=True)
    x = _x(1)
    layer(x)  # build
    assert not _np(layer(x)).any()  # inference: no noise
    first, second = _call_training(layer, x, jit), _call_training(layer, x, jit)
    for noise in (first, second):
        flat = noise.reshape(-1, 3)
        # Every step and example its own draw (inside lax.scan a SeedGenerator draw repeats or leaks).
        assert len(np.unique(flat[:, 0])) == flat.shape[0]
        assert 0.0 <= flat.min() and flat.max() < 1.0
        assert abs(flat.mean() - 0.5) < 0.03  # 576 uniforms: mean within ~3.5 standard errors
    assert not np.intersect1d(first.ravel(), second.ravel()).size  # each call (batch) is fresh


def _zoneout_masks(layer, reference_cell, x, jit):
    """Masks m_t of h_t = m h'_t + (1 - m) h_{t-1}, read off the outputs of a training call.

    reference_cell: the same cell without zoneout on h (same weights); it gives h'_t
    from the step's input and the previous state. Units where h' = h_{t-1} are left out.
    """
    out = _call_training(layer, x, jit)
    states = reference_cell.get_initial_state(batch_size=B)
    masks, known = [], []
    for t in range(T):
        new_h, new_states = reference_cell(x[:, t], states)
        new_h, previous = _np(new_h), _np(states[0])
        is_new = np.isclose(out[:, t], new_h, atol=1e-6)
        is_old = np.isclose(out[:, t], previous, atol=1e-6)
        assert np.all(is_new | is_old), f"step {t}: neither the new nor the old value"
        masks.append(is_new)
        known.append(is_new ^ is_old)
        states = [ops.convert_to_tensor(out[:, t])] + list(new_states[1:])
    return np.stack(masks, 1), np.stack(known, 1)


CELLS = {
    "rum": lambda keep, seed: RUMCell(N, eta=1.0, activation="tanh", zoneout_keep_h=keep, seed=seed),
    # zoneout on c off, so that c follows from h: only h's mask is read off.
    "ln_lstm": lambda keep, seed: LayerNormLSTMCell(N, zoneout_keep_h=keep, zoneout_keep_c=None, seed=seed),
}


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_zoneout_in_a_plain_rnn_is_fresh_and_has_the_right_rate(name, jit):
    keep = 0.7
    layer = keras.layers.RNN(CELLS[name](keep, 3), return_sequences=True)
    x = _x(2)
    layer(x)
    randomize(layer, np.random.default_rng(4))
    reference = CELLS[name](None, None)
    reference.build((None, D))
    reference.set_weights(layer.get_weights())
    masks, known = _zoneout_masks(layer, reference, x, jit)
    assert known.mean() > 0.9
    rate = masks[known].mean()
    assert abs(rate - keep) < 0.05, rate  # ~1,500 Bernoulli(0.7) draws: 5 % is ~4 standard errors
    # Fresh at every step: consecutive steps' masks agree only as independent draws would.
    both = known[:, 1:] & known[:, :-1]
    agree = (masks[:, 1:] == masks[:, :-1])[both].mean()
    assert abs(agree - (keep**2 + (1 - keep) ** 2)) < 0.06, agree


def _fast_slow():
    return FastSlowCell([LayerNormLSTMCell(6), LayerNormLSTMCell(6)], RUMCell(7, eta=1.0, zoneout_keep_h=0.9), seed=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        lambda: RUMCell(16, lambda_=1, eta=2.0, zoneout_keep_h=0.9, seed=2),
        lambda: LayerNormLSTMCell(16, seed=2),
        lambda: FastSlowCell(
            [LayerNormLSTMCell(16), LayerNormLSTMCell(16)], RUMCell(16, eta=1.0), keep_prob=0.9, seed=2
        ),
    ],
    ids=["rum", "ln_lstm", "fast_slow"],
)
def test_zoneout_cells_train_in_a_compiled_plain_rnn(make):
    # fit compiles the step (jax.jit under JAX: this was an UnexpectedTracerError, the cell
    # drew its noise inside lax.scan).
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(64, 6, D)).astype(np.float32)
    y = x[:, 0, :2] * 2.0  # needs memory of the first step
    inputs = keras.Input((6, D))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.RNN(make())(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < 0.5 * history[0]


def test_cells_in_rum_tf_layers_carry_no_step_counter():
    from rum_tf import RUM, Recurrent

    assert RUM(N, zoneout_keep_h=0.9).cell.state_size == [N]
    assert Recurrent(LayerNormLSTMCell(N)).cell.state_size == [N, N]
    assert keras.layers.RNN(RUMCell(N, zoneout_keep_h=0.9)).cell.state_size == [N, 1]
    assert RUMCell(N).state_size == [N]  # no training noise, no counter
    fast_slow = _fast_slow()
    assert fast_slow.state_size == [6, 6, 7, 1] and fast_slow.slow_cell.state_size == [7]
