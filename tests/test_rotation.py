"""rum_tf.rotation against the NumPy reference and the properties of SPEC §1."""

import numpy as np
import pytest
from keras import ops

import numpy_reference as ref
from cell_helpers import backend, finite_differences, gradients
from rum_tf import rotation

RNG = np.random.default_rng(0)
B, N = 6, 9


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _pair():
    return RNG.normal(size=(B, N)).astype(np.float32), RNG.normal(size=(B, N)).astype(np.float32)


def test_operator_matches_reference():
    a, b = _pair()
    got = _np(rotation.rotation_operator(a, b))
    want = np.stack([ref.rotation_matrix(a[i], b[i])[0] for i in range(B)])
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_operator_is_a_rotation():
    a, b = _pair()
    r = _np(rotation.rotation_operator(a, b)).astype(np.float64)
    eye = np.broadcast_to(np.eye(N), r.shape)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), eye, atol=2e-6)
    np.testing.assert_allclose(np.linalg.det(r), np.ones(B), atol=2e-6)


def test_maps_a_direction_to_b_direction_and_fixes_the_complement():
    a, b = _pair()
    r = _np(rotation.rotation_operator(a, b))
    a_hat = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_hat = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", r, a_hat), b_hat, atol=2e-6)
    # A vector orthogonal to a and b is left alone.
    w = RNG.normal(size=(B, N))
    for i in range(B):
        q, _ = np.linalg.qr(np.stack([a[i], b[i]], 1).astype(np.float64))
        w[i] -= q @ (q.T @ w[i])
    np.testing.assert_allclose(np.einsum("bij,bj->bi", r, w), w, atol=2e-6)


def test_rotate_equals_operator_times_h():
    a, b = _pair()
    h = RNG.normal(size=(B, N)).astype(np.float32)
    r = np.stack([ref.rotation_matrix(a[i], b[i])[0] for i in range(B)])
    np.testing.assert_allclose(_np(rotation.rotate(a, b, h)), np.einsum("bij,bj->bi", r, h), atol=3e-6)


def test_associative_update_equals_the_full_product():
    a, b = _pair()
    q, _ = np.linalg.qr(RNG.normal(size=(B, N, N)))
    m = q.astype(np.float32)
    want = np.stack([q[i] @ ref.rotation_matrix(a[i], b[i])[0] for i in range(B)])
    fast, cos = rotation.associative_update(m, a, b)
    np.testing.assert_allclose(_np(fast), want, atol=3e-6)
    # The official O(N^3) product M R, with R as rum_tf builds it.
    np.testing.assert_allclose(_np(ops.matmul(m, rotation.rotation_operator(a, b))), want, atol=3e-6)
    want_cos = [ref.rotation_matrix(a[i], b[i])[1] for i in range(B)]
    np.testing.assert_allclose(_np(cos)[:, 0], want_cos, atol=1e-6)


def test_memory_step_gives_update_and_rotated_state():
    a, b = _pair()
    h = RNG.normal(size=(B, N)).astype(np.float32)
    q, _ = np.linalg.qr(RNG.normal(size=(B, N, N)))
    offset = (q - np.eye(N)).astype(np.float32)
    want = np.stack([q[i] @ ref.rotation_matrix(a[i], b[i])[0] for i in range(B)])
    for step in (rotation.memory_step, rotation.memory_step_autodiff):
        new_offset, new_mh, cos, _ = step(offset, a, b, h)
        np.testing.assert_allclose(_np(new_offset) + np.eye(N), want, atol=3e-6)
        np.testing.assert_allclose(_np(new_mh), np.einsum("bij,bj->bi", want, h), atol=1e-5)
        np.testing.assert_allclose(_np(cos), _np(rotation.associative_update(q.astype(np.float32), a, b)[1]))


def _reference_rotation_loss(a, b, h, grad_y, grad_cos):
    """sum(grad_y * R h) + sum(grad_cos * cos) from the NumPy reference, float64."""
    total = 0.0
    for i in range(a.shape[0]):
        r, cos = ref.rotation_matrix(a[i], b[i])
        total += grad_y[i] @ (r @ h[i]) + grad_cos[i, 0] * cos
    return total


def test_rotate_with_cos_gradient_matches_finite_differences_of_the_reference():
    a, b = _pair()
    h = RNG.normal(size=(B, N)).astype(np.float32)
    grad_y = RNG.normal(size=(B, N))
    grad_cos = RNG.normal(size=(B, 1))
    want = finite_differences(lambda a, b, h: _reference_rotation_loss(a, b, h, grad_y, grad_cos), a, b, h)

    def loss(a, b, h):
        y, cos = rotation.rotate_with_cos(a, b, h)
        return ops.sum(y * ops.cast(grad_y, y.dtype)) + ops.sum(cos * ops.cast(grad_cos, cos.dtype))

    y, cos = rotation.rotate_with_cos(a, b, h)
    r = [ref.rotation_matrix(a[i], b[i]) for i in range(B)]
    np.testing.assert_allclose(_np(y), np.stack([m @ h[i] for i, (m, _) in enumerate(r)]), atol=3e-6)
    np.testing.assert_allclose(_np(cos)[:, 0], [c for _, c in r], atol=1e-6)
    for got, expected in zip(gradients(loss, a, b, h), want):
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def _degenerate_cases():
    a = RNG.normal(size=(N,)).astype(np.float32)
    zero = np.zeros(N, np.float32)
    return {
        "parallel": (a, 2.5 * a),
        "identical": (a, a),
        "antiparallel": (a, -a),
        "a_zero": (zero, a),
        "b_zero": (a, zero),
        "both_zero": (zero, zero),
    }


@pytest.mark.parametrize("case", sorted(_degenerate_cases()))
def test_degenerate_inputs_give_finite_values_and_gradients(case):
    a, b = (x[None] for x in _degenerate_cases()[case])
    h = RNG.normal(size=(1, N)).astype(np.float32)
    for hh in (h, np.zeros_like(h)):
        assert np.isfinite(_np(rotation.rotate(a, b, hh))).all()
        for g in gradients(lambda a, b, h: rotation.rotate(a, b, h), a, b, hh):
            assert np.isfinite(g).all(), case
        for g in gradients(lambda a, b, h: rotation.rotate_with_cos(a, b, h)[1], a, b, hh):
            assert np.isfinite(g).all(), case
    m = np.tile(np.eye(N, dtype=np.float32), (1, 1, 1))
    assert np.isfinite(_np(rotation.associative_update(m, a, b)[0])).all()
    for g in gradients(lambda m, a, b: rotation.associative_update(m, a, b)[0], m, a, b):
        assert np.isfinite(g).all(), case
    for step in (rotation.memory_step, rotation.memory_step_autodiff):
        for g in gradients(lambda d, a, b, h, step=step: step(d, a, b, h)[1], m - m, a, b, h):
            assert np.isfinite(g).all(), case


@pytest.mark.parametrize("case", ["a_zero", "b_zero", "both_zero", "h_zero", "a_tiny", "b_tiny"])
def test_hand_written_gradient_equals_autodiff_where_a_guard_is_hit(case):
    # At (near-)zero vectors, where |x|^2 < eps, the official formula is not
    # differentiable; the guarded autodiff gradient of rotation_components /
    # apply_rotation is the definition the hand-written one must keep.
    a, b = _pair()
    cases = dict(_degenerate_cases(), h_zero=(a, b), a_tiny=(1e-8 * a, b), b_tiny=(a, 1e-8 * b))
    a, b = (np.asarray(x).reshape(-1, N)[:1] for x in cases[case])
    h = np.zeros((1, N), np.float32) if case == "h_zero" else RNG.normal(size=(1, N)).astype(np.float32)
    weights = RNG.normal(size=(1, N + 1)).astype(np.float32)

    def weigh(y, cos):
        return ops.sum(y * weights[:, :N]) + ops.sum(cos * weights[:, N:])

    hand = gradients(lambda a, b, h: weigh(*rotation.rotate_with_cos(a, b, h)), a, b, h)

    def autodiff(a, b, h):
        components = rotation.rotation_components(a, b)
        return weigh(rotation.apply_rotation(components, h), components[2])

    for got, want in zip(hand, gradients(autodiff, a, b, h)):
        assert np.isfinite(got).all()
        # Near a guard the gradient reaches 1e6 (1/|a| for |a| ~ 1e-8 |b|): float32 keeps ~7 digits of it,
        # so the two computations agree to a relative 1e-5, not to an absolute 1e-6.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(backend() == "jax", reason="JAX computes in float32 unless x64 is enabled")
@pytest.mark.parametrize("case", ["parallel", "identical", "antiparallel"])
def test_hand_written_gradient_equals_autodiff_at_parallel_inputs_in_float64(case):
    # In float32 these gradients are rounding noise amplified by 1/sin; float64
    # resolves them, and the sin floor (1 - cos^2 < 1e-14) is hit.
    import tensorflow as tf

    a, b = (tf.constant(x[None], tf.float64) for x in _degenerate_cases()[case])
    h = tf.constant(RNG.normal(size=(1, N)))
    weights = tf.constant(RNG.normal(size=(1, N + 1)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b, h])
        y, cos = rotation.rotate_with_cos(a, b, h)
        hand = tf.reduce_sum(y * weights[:, :N]) + tf.reduce_sum(cos * weights[:, N:])
        components = rotation.rotation_components(a, b)
        y = rotation.apply_rotation(components, h)
        auto = tf.reduce_sum(y * weights[:, :N]) + tf.reduce_sum(components[2] * weights[:, N:])
    for got, want in zip(tape.gradient(hand, [a, b, h]), tape.gradient(auto, [a, b, h])):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)


@pytest.mark.skipif(backend() == "jax", reason="JAX computes in float32 unless x64 is enabled")
def test_parallel_inputs_give_the_identity_within_the_documented_guard():
    # float64, so that rounding of cos (about 1e-4 in sin for float32) does not hide the guard:
    # sin is floored at sqrt(SIN_SQUARED_FLOOR) = 1e-7, the only change to the official value.
    a = RNG.normal(size=(1, N))
    r = _np(rotation.rotation_operator(a, 3.0 * a))
    assert r.dtype == np.float64
    np.testing.assert_allclose(r[0], np.eye(N), atol=2e-7)


def test_guard_floors_sin_at_1e_7_only_where_the_official_value_is_smaller():
    # Rows that reach the floor (1 - cos^2 < 1e-14): b along a or against it (cos = +-1 exactly),
    # and, in float64, b a hair off a; and rows that do not. JAX computes in float32.
    dtype = np.float32 if backend() == "jax" else np.float64
    a, b = (x.astype(np.float64) for x in _pair())
    e = np.eye(N)[0]
    off = RNG.normal(size=N)
    off -= (off @ a[0]) / (a[0] @ a[0]) * a[0]  # orthogonal to a[0]
    rows = [(e, e), (e, -e)] + list(zip(a, b))
    if dtype == np.float64:
        rows += [(a[0], 2.5 * a[0]), (a[0], a[0] + 1e-9 * off)]
    a, b = (np.stack(x).astype(dtype) for x in zip(*rows))
    _, _, cos, sin = rotation.rotation_components(a, b)
    cos, sin = _np(cos)[:, 0], _np(sin)[:, 0]
    assert sin.dtype == dtype
    reference = [ref.rotation_matrix(x, y) for x, y in zip(a.astype(np.float64), b.astype(np.float64))]
    np.testing.assert_allclose(cos, [c for _, c in reference], atol=1e-6 if dtype == np.float32 else 1e-12)
    # The official sin, from the same cos (NaN where |cos| rounds above 1).
    with np.errstate(invalid="ignore"):
        official = np.sqrt(1 - np.square(cos))
    floored = ~(1 - np.square(cos) >= 1e-14)  # the documented floor of 1 - cos^2
    assert floored[:2].all() and not floored[2 : 2 + B].any()
    if dtype == np.float64:
        assert floored[-2:].all()
    np.testing.assert_allclose(sin[floored], 1e-7, rtol=1e-6)
    np.testing.assert_allclose(sin[~floored], official[~floored], rtol=1e-6)
    assert np.all(np.abs(sin - np.nan_to_num(official))[floored] <= 1e-7)
    # The operator moves by at most ~1e-7 from the official (reference) one where the floor acts.
    np.testing.assert_allclose(_np(rotation.rotation_operator(a, b)), np.stack([r for r, _ in reference]), atol=2e-7)


SCALES = [1e-20, 1e-4, 1.0, 1e12]  # 1e-20: |x|^2 below eps (the floor); 1e12: |x|^2 ~ 1e25


@pytest.mark.parametrize("scale_a", SCALES)
@pytest.mark.parametrize("scale_b", SCALES)
def test_rotation_matches_the_reference_and_stays_finite_at_any_scale(scale_a, scale_b):
    a, b = _pair()
    a, b = (a * np.float32(scale_a)).astype(np.float32), (b * np.float32(scale_b)).astype(np.float32)
    h = RNG.normal(size=(B, N)).astype(np.float32)
    want = [ref.rotation_matrix(a[i], b[i]) for i in range(B)]
    y, cos = rotation.rotate_with_cos(a, b, h)
    np.testing.assert_allclose(_np(y), np.stack([r @ h[i] for i, (r, _) in enumerate(want)]), atol=1e-5)
    np.testing.assert_allclose(_np(cos)[:, 0], [c for _, c in want], atol=1e-6)
    m = np.tile(np.eye(N, dtype=np.float32), (B, 1, 1))
    new_offset, new_mh, _, _ = rotation.memory_step(m - m, a, b, h)
    np.testing.assert_allclose(_np(new_offset) + np.eye(N), np.stack([r for r, _ in want]), atol=1e-5)
    weights = RNG.normal(size=(B, N + 1)).astype(np.float32)

    def weigh(y, cos):
        return ops.sum(y * weights[:, :N]) + ops.sum(cos * weights[:, N:])

    for g in gradients(lambda a, b, h: weigh(*rotation.rotate_with_cos(a, b, h)), a, b, h):
        assert np.isfinite(g).all()
    for g in gradients(lambda d, a, b, h: rotation.memory_step_autodiff(d, a, b, h)[1], m - m, a, b, h):
        assert np.isfinite(g).all()
    for g in gradients(
        lambda d, a, b, h: sum(ops.sum(x) for x in rotation.memory_step(d, a, b, h)[:3]), m - m, a, b, h
    ):
        assert np.isfinite(g).all()


def test_l2_normalize_keeps_the_value_and_stops_the_gradient_below_the_floor():
    x = RNG.normal(size=(4, N)).astype(np.float32)
    x[1] = 0.0
    x[2] *= 1e-9  # |x|^2 ~ 1e-17 < eps
    got = _np(rotation.l2_normalize(x))
    want = np.stack([ref.l2n(row) for row in x.astype(np.float64)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    weights = RNG.normal(size=(4, N)).astype(np.float32)
    (grad,) = gradients(lambda x: rotation.l2_normalize(x) * weights, x)
    # Above the floor: the official gradient, (w - y (y.w)) / |x|; below: zero, not w * 1e6.
    for i in (0, 3):
        y = want[i]
        expected = (weights[i] - y * (y @ weights[i])) / np.linalg.norm(x[i].astype(np.float64))
        np.testing.assert_allclose(grad[i], expected, rtol=1e-4, atol=1e-6)
    assert not grad[1].any() and not grad[2].any()


# memory_step: the λ=1 update of the memory offset D = M - I, with a hand-written gradient.


def _memory_weights(n, batch=1):
    return (
        RNG.normal(size=(batch, n, n)).astype(np.float32),
        RNG.normal(size=(batch, n)).astype(np.float32),
        RNG.normal(size=(batch, 1)).astype(np.float32),
    )


def _weigh_memory_step(step, weights):
    w_offset, w_y, w_cos = weights

    def loss(offset, a, b, h):
        new_offset, y, cos, _ = step(offset, a, b, h)
        return ops.sum(new_offset * w_offset) + ops.sum(y * w_y) + ops.sum(cos * w_cos)

    return loss


def _reference_memory_loss(offset, a, b, h, weights):
    """The same weighted sum from the NumPy reference: M' = (D + I) R(a, b), float64."""
    w_offset, w_y, w_cos = (np.asarray(w, np.float64) for w in weights)
    total = 0.0
    for i in range(a.shape[0]):
        r, cos = ref.rotation_matrix(a[i], b[i])
        memory = (offset[i] + np.eye(a.shape[1])) @ r
        total += np.sum(w_offset[i] * (memory - np.eye(a.shape[1]))) + w_y[i] @ (memory @ h[i]) + w_cos[i, 0] * cos
    return total


def test_memory_step_matches_the_reference_and_its_gradient_finite_differences():
    batch, n = 2, 5
    offset = 0.3 * RNG.normal(size=(batch, n, n)).astype(np.float32)
    a, b, h = (RNG.normal(size=(batch, n)).astype(np.float32) for _ in range(3))
    weights = _memory_weights(n, batch)
    new_offset, y, cos, factors = rotation.memory_step(offset, a, b, h)
    memory = np.stack([(offset[i] + np.eye(n)) @ ref.rotation_matrix(a[i], b[i])[0] for i in range(batch)])
    np.testing.assert_allclose(_np(new_offset), memory - np.eye(n), atol=3e-6)
    np.testing.assert_allclose(_np(y), np.einsum("bij,bj->bi", memory, h), atol=1e-5)
    np.testing.assert_allclose(_np(cos)[:, 0], [ref.rotation_matrix(a[i], b[i])[1] for i in range(batch)], atol=1e-6)
    np.testing.assert_allclose(_np(rotation.memory_unstep(new_offset, factors)), offset, atol=1e-6)
    want = finite_differences(lambda *args: _reference_memory_loss(*args, weights), offset, a, b, h)
    got = gradients(_weigh_memory_step(rotation.memory_step, weights), offset, a, b, h)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "case", ["a_zero", "b_zero", "both_zero", "h_zero", "a_tiny", "b_tiny", "parallel", "zero_memory"]
)
def test_memory_step_hand_written_gradient_equals_autodiff(case):
    # Where a guard is hit the official formula is not differentiable; the
    # guarded autodiff gradient of memory_step_autodiff is the definition.
    a, b = _pair()
    cases = dict(_degenerate_cases(), h_zero=(a, b), a_tiny=(1e-8 * a, b), b_tiny=(a, 1e-8 * b), zero_memory=(a, b))
    a, b = (np.asarray(x).reshape(-1, N)[:1] for x in cases[case])
    h = np.zeros((1, N), np.float32) if case == "h_zero" else RNG.normal(size=(1, N)).astype(np.float32)
    offset = np.zeros((1, N, N), np.float32) if case == "zero_memory" else RNG.normal(size=(1, N, N)).astype(np.float32)
    weights = _memory_weights(N)
    hand = gradients(_weigh_memory_step(rotation.memory_step, weights), offset, a, b, h)
    auto = gradients(_weigh_memory_step(rotation.memory_step_autodiff, weights), offset, a, b, h)
    for got, want in zip(hand, auto):
        assert np.isfinite(got).all()
        # a or b near zero scale their gradient by 1/sqrt(eps) = 1e6: compare relative to its size.
        np.testing.assert_allclose(got, want, atol=2e-6 * max(1.0, np.max(np.abs(want))))


@pytest.mark.skipif(backend() == "jax", reason="JAX computes in float32 unless x64 is enabled")
@pytest.mark.parametrize("case", ["parallel", "identical", "antiparallel"])
def test_memory_step_hand_written_gradient_equals_autodiff_at_parallel_inputs_in_float64(case):
    import tensorflow as tf

    a, b = (tf.constant(x[None], tf.float64) for x in _degenerate_cases()[case])
    h = tf.constant(RNG.normal(size=(1, N)))
    offset = tf.constant(RNG.normal(size=(1, N, N)))
    weights = [tf.constant(w, tf.float64) for w in _memory_weights(N)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([offset, a, b, h])
        hand = _weigh_memory_step(rotation.memory_step, weights)(offset, a, b, h)
        auto = _weigh_memory_step(rotation.memory_step_autodiff, weights)(offset, a, b, h)
    for got, want in zip(tape.gradient(hand, [offset, a, b, h]), tape.gradient(auto, [offset, a, b, h])):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
