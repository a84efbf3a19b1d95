"""The rotation R(a, b) of RUM: the only place where its math lives.

R(a, b) is the orthogonal operator that rotates the plane spanned by a and b by
the angle between them and leaves the orthogonal complement fixed:

    u = a/|a|,  v = normalise(b - (u.b) u),  cos = u.b/|b|,  sin = sqrt(1 - cos^2)
    R = I + (cos - 1)(u u^T + v v^T) + sin (v u^T - u v^T)

Everything is written with `keras.ops`, so it runs on every Keras backend, and
works on batches: vectors are [..., N], operators [..., N, N].

Numerical safety (SPEC §6). The official code computes sin = sqrt(1 - cos^2)
without a guard, which is NaN when |cos| rounds above 1 and has an unbounded
gradient as |cos| -> 1. Here 1 - cos^2 is floored at `SIN_SQUARED_FLOOR`
(1e-14), so sin >= 1e-7: the value differs from the official formula by at most
1e-7, and only where the official value is already below 1e-7 or NaN.
"""

import collections
import functools

import keras
from keras import ops

EPS = 1e-12
SIN_SQUARED_FLOOR = 1e-14
# The floors above round to 0 in float16; there they are raised to its smallest normal number.
_SMALLEST_NORMAL = {"float16": 2.0**-14}


def floor_for(value, dtype):
    """`value`, raised to `dtype`'s smallest normal number where it would underflow there."""
    return max(value, _SMALLEST_NORMAL.get(keras.backend.standardize_dtype(dtype), 0.0))


def l2_normalize(x, eps=EPS):
    """x / sqrt(max(sum(x^2), eps)) over the last axis: tf.nn.l2_normalize's value.

    The gradient differs from tf.nn.l2_normalize's only where sum(x^2) < eps:
    there it is zero (the floored value counts as a constant), where the
    official one is x's gradient times 1/sqrt(eps) = 1e6. A state that stays
    exactly 0 (zero inputs, e.g. left padding without a mask) would otherwise
    multiply the gradient by about 1e6 per step until it overflows (SPEC §6).
    """
    square_sum = ops.sum(ops.square(x), axis=-1, keepdims=True)
    eps = floor_for(eps, x.dtype)
    x = ops.where(square_sum >= eps, x, ops.stop_gradient(x))
    return x * ops.rsqrt(ops.maximum(square_sum, eps))


def _dot(x, y):
    return ops.sum(x * y, axis=-1, keepdims=True)


class _Plane(collections.namedtuple("_Plane", "aa ra u ub bb rb cos sin_squared sin ww rw v")):
    """Every intermediate of R(a, b)'s plane and angle; the hand-written gradient needs them."""


def _plane(a, b, eps):
    eps = floor_for(eps, a.dtype)
    aa = _dot(a, a)
    ra = ops.rsqrt(ops.maximum(aa, eps))
    u = a * ra  # l2_normalize(a)
    ub = _dot(u, b)
    bb = _dot(b, b)
    rb = ops.rsqrt(ops.maximum(bb, eps))
    # u.l2n(b) written as (u.b)/|b|: the same value with one product fewer,
    # which matters because every op runs T times inside the recurrence.
    cos = ub * rb
    sin_squared = 1.0 - ops.square(cos)
    sin = ops.sqrt(ops.maximum(sin_squared, floor_for(SIN_SQUARED_FLOOR, a.dtype)))
    w = b - ub * u
    ww = _dot(w, w)
    rw = ops.rsqrt(ops.maximum(ww, eps))
    return _Plane(aa, ra, u, ub, bb, rb, cos, sin_squared, sin, ww, rw, w * rw)


def rotation_components(a, b, eps=EPS):
    """The plane and angle of R(a, b).

    Args:
      a, b: tensors [..., N].
      eps: the normalisation epsilon (1e-12 in the official code).

    Returns:
      (u, v, cos, sin): u, v [..., N] orthonormal basis of span{a, b} with u
      along a; cos, sin [..., 1] of the angle from a to b.
    """
    plane = _plane(a, b, eps)
    return plane.u, plane.v, plane.cos, plane.sin


def rotate(a, b, h, eps=EPS):
    """R(a, b) h without forming R: O(N) per example. a, b, h: [..., N]."""
    return rotate_with_cos(a, b, h, eps)[0]


def rotate_with_cos(a, b, h, eps=EPS):
    """(R(a, b) h, cos) in O(N), with a hand-written gradient.

    The values are those of `apply_rotation(rotation_components(a, b), h)` (the
    same helpers compute them); the gradient is the one automatic
    differentiation of that formula gives (guards included), written out so
    that the backward pass is a few lines instead of the reverse of every
    forward op. Inside a recurrence on CPU a step costs mostly per op, not per
    FLOP: this measured 0-10 % faster training steps under TensorFlow and
    10-20 % under JAX (docs/BENCHMARKS.md). Backends without
    `ops.custom_gradient` (torch) use automatic differentiation.

    Returns:
      (R h [..., N], cos [..., 1]).
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        components = rotation_components(a, b, eps)
        return apply_rotation(components, h), components[2]
    return _rotate_with_cos_custom_gradient(eps)(a, b, h)


@functools.cache
def _rotate_with_cos_custom_gradient(eps):
    @ops.custom_gradient
    def rotate_with_cos(a, b, h):
        p = _plane(a, b, eps)
        u, v = p.u, p.v
        alpha, beta, uh, vh = _in_plane(u, v, p.cos, p.sin, h)
        # The per-example scalars the backward pass needs travel as one tensor:
        # in a loop, every saved tensor costs a push and a pop per step.
        scalars = ops.concatenate(
            [p.aa, p.ra, p.ub, p.bb, p.rb, p.cos, p.sin_squared, p.sin, p.ww, p.rw, uh, vh, alpha, beta], -1
        )

        def grad(*args, upstream=None):
            if upstream is None:
                upstream = args[0] if len(args) == 1 else args
            grad_y, grad_cos = upstream
            aa, ra, ub, bb, rb, cos, sin_squared, sin, ww, rw, uh, vh, alpha, beta = ops.split(scalars, 14, -1)
            cos_1 = cos - 1.0
            # Through R h = h + alpha u + beta v; grad_h comes out as R^T grad_y.
            grad_alpha = _dot(grad_y, u)
            grad_beta = _dot(grad_y, v)
            grad_uh = grad_alpha * cos_1 + grad_beta * sin
            grad_vh = grad_beta * cos_1 - grad_alpha * sin
            grad_sin = grad_beta * uh - grad_alpha * vh
            grad_h = grad_y + grad_uh * u + grad_vh * v
            grad_u = alpha * grad_y + grad_uh * h
            grad_v = beta * grad_y + grad_vh * h
            # cos enters through cos - 1, sin and the caller's own use of it.
            grad_cos = grad_alpha * uh + grad_beta * vh + (0.0 if grad_cos is None else grad_cos)
            plane = _Plane(aa, ra, u, ub, bb, rb, cos, sin_squared, sin, ww, rw, v)
            grad_a, grad_b = _plane_gradient(plane, b, grad_u, grad_v, grad_cos, grad_sin, eps)
            return grad_a, grad_b, grad_h

        return (h + alpha * u + beta * v, p.cos), grad

    return rotate_with_cos


def _plane_gradient(p, b, grad_u, grad_v, grad_cos, grad_sin, eps):
    """(grad a, grad b) from the gradients of u, v, cos, sin of `_plane(a, b)`.

    What automatic differentiation of `_plane` gives, guards included.
    """
    u, v, cos, sin = p.u, p.v, p.cos, p.sin
    eps = floor_for(eps, b.dtype)
    grad_cos = grad_cos - ops.where(p.sin_squared >= floor_for(SIN_SQUARED_FLOOR, b.dtype), grad_sin * cos / sin, 0.0)
    # v = w / |w|, w = b - (u.b) u, cos = (u.b) / |b|, u = a / |a|; each
    # normalisation passes the gradient's part orthogonal to its output
    # unless the floor eps was hit, where it only scales.
    grad_w = p.rw * (grad_v - ops.where(p.ww >= eps, v * _dot(v, grad_v), 0.0))
    grad_ub = grad_cos * p.rb - _dot(u, grad_w)
    grad_b = grad_w + grad_ub * u - ops.where(p.bb >= eps, grad_cos * cos * ops.square(p.rb), 0.0) * b
    grad_u = grad_u - p.ub * grad_w + grad_ub * b
    grad_a = p.ra * (grad_u - ops.where(p.aa >= eps, u * _dot(u, grad_u), 0.0))
    return grad_a, grad_b


def apply_rotation(components, h):
    """R h for R given by `rotation_components` (to reuse them, e.g. for cos)."""
    u, v, cos, sin = components
    alpha, beta, _, _ = _in_plane(u, v, cos, sin, h)
    return h + alpha * u + beta * v


def _in_plane(u, v, cos, sin, h):
    """(alpha, beta, u.h, v.h) with R h = h + alpha u + beta v.

    Per-example coefficients first: two full-width products instead of six.
    """
    uh = _dot(u, h)
    vh = _dot(v, h)
    return (cos - 1.0) * uh - sin * vh, (cos - 1.0) * vh + sin * uh, uh, vh


def rotation_operator(a, b, eps=EPS):
    """The full operator R(a, b) as a [..., N, N] matrix."""
    return _operator_from_components(*rotation_components(a, b, eps))


def _operator_from_components(u, v, cos, sin):
    n = ops.shape(u)[-1]
    uu = _outer(u, u)
    vv = _outer(v, v)
    vu = _outer(v, u)
    cos = ops.expand_dims(cos, -1)
    sin = ops.expand_dims(sin, -1)
    eye = ops.eye(n, dtype=u.dtype)
    return eye + (cos - 1.0) * (uu + vv) + sin * (vu - ops.swapaxes(vu, -1, -2))


def _outer(x, y):
    return ops.expand_dims(x, -1) * ops.expand_dims(y, -2)


def associative_update(m, a, b, eps=EPS):
    """M R(a, b) in O(N^2) per example, using R = I + rank 2.

    M R = M + ((cos - 1) M u + sin M v) u^T + ((cos - 1) M v - sin M u) v^T.

    Args:
      m: [..., N, N] the associative memory.
      a, b: [..., N].

    Returns:
      (M R(a, b), cos) with cos [..., 1], the angle's cosine.
    """
    components = rotation_components(a, b, eps)
    new_m, _, _ = _rank2_update(m, components)
    return new_m, components[2]


def memory_step(offset, a, b, h, eps=EPS):
    """One λ=1 step on the memory carried as its offset D = M - I.

    Computes M R(a, b) as the rank-2 update D' = D + p^T basis (M x = D x + x,
    p = M [u v] K) and M R(a, b) h = M h + p_u (u.h) + p_v (v.h), which reuses
    the product with M that the update needs, so M is read once. The cells
    carry D, not M, so that a zero state is the identity memory (Keras' RNN
    layers reset every state to zeros). The factors (p, basis) are returned
    too, so that the step can be undone exactly (`memory_unstep`), also where
    R(a, b) is not orthogonal (a or b zero, where the guards make R a
    projection). The factors carry no gradient.

    On TensorFlow and JAX the gradient is written out by hand (the one
    automatic differentiation of `memory_step_autodiff` gives, guards
    included): its backward pass is four batched products with B x N^2
    operands (G U, p^T G, [g_q g_y]^T M, and the rank-3 update of G),
    instead of the reverse of every op of the update with the stacks and
    outer products automatic differentiation materialises.

    Args:
      offset: [..., N, N], M - I.
      a, b, h: [..., N].

    Returns:
      (D', M' h, cos, (p, basis)) with p, basis [..., 2, N] and
      D' = D + p^T basis.
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return memory_step_autodiff(offset, a, b, h, eps)
    new_offset, new_mh, cos, p, basis = _memory_step_custom_gradient(eps)(offset, a, b, h)
    return new_offset, new_mh, cos, (ops.stop_gradient(p), ops.stop_gradient(basis))


def memory_step_autodiff(offset, a, b, h, eps=EPS):
    """`memory_step` differentiated automatically: the path of backends without
    `ops.custom_gradient`, and the definition its hand-written gradient must match."""
    components = rotation_components(a, b, eps)
    new_offset, new_mh, factors = _rank2_update(offset, components, h, offset=True)
    return new_offset, new_mh, components[2], factors


@functools.cache
def _memory_step_custom_gradient(eps):
    # Vectors that meet a B x N x N operand travel as the rows of a [B, k, N]
    # tensor (`_products`, `_outer_sum`): stacking and unstacking along the
    # last axis costs more on CPU than the batched product itself.
    @ops.custom_gradient
    def memory_step(offset, a, b, h):
        pl = _plane(a, b, eps)
        u, v, cos, sin = pl.u, pl.v, pl.cos, pl.sin
        # q = M [u v] and M h with M = D + I, in one product.
        columns = ops.stack([u, v, h], axis=-2)
        q_u, q_v, m_h = (x + y for x, y in zip(ops.unstack(_products(offset, columns), axis=-2), (u, v, h)))
        # R = I + [u v] K [u v]^T, K = [[cos - 1, -sin], [sin, cos - 1]]; p = q K.
        p_u = (cos - 1.0) * q_u + sin * q_v
        p_v = (cos - 1.0) * q_v - sin * q_u
        p, basis = ops.stack([p_u, p_v], axis=-2), columns[..., :2, :]
        uh, vh = _dot(u, h), _dot(v, h)
        new_offset = offset + _outer_sum(p, basis)
        new_mh = m_h + p_u * uh + p_v * vh

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow: one argument per output; JAX: one tuple
                upstream = args[0] if len(args) == 1 else args
            g_offset, g_y, g_cos = upstream[:3]
            if g_offset is None:
                g_offset = ops.zeros_like(offset)
            if g_y is None:
                g_y = ops.zeros_like(h)
            # D' = D + p_u u^T + p_v v^T and y = M h + p_u (u.h) + p_v (v.h).
            g_pu, g_pv = ops.unstack(_products(g_offset, basis), axis=-2)  # G u, G v
            g_pu, g_pv = g_pu + g_y * uh, g_pv + g_y * vh
            g_uh, g_vh = _dot(p_u, g_y), _dot(p_v, g_y)
            g_u, g_v = ops.unstack(ops.matmul(p, g_offset), axis=-2)  # G^T p_u, G^T p_v
            # p = q K.
            g_qu = (cos - 1.0) * g_pu - sin * g_pv
            g_qv = sin * g_pu + (cos - 1.0) * g_pv
            grad_cos = _dot(q_u, g_pu) + _dot(q_v, g_pv) + (0.0 if g_cos is None else g_cos)
            grad_sin = _dot(q_v, g_pu) - _dot(q_u, g_pv)
            # q = M [u v] and M h: M^T g_qu, M^T g_qv, M^T g_y (rows of x^T D + x^T),
            # and g_D = G + g_qu u^T + g_qv v^T + g_y h^T.
            rows = ops.stack([g_qu, g_qv, g_y], axis=-2)
            back_u, back_v, back_h = ops.unstack(ops.matmul(rows, offset), axis=-2)
            grad_u = back_u + g_qu + g_u + g_uh * h
            grad_v = back_v + g_qv + g_v + g_vh * h
            grad_h = back_h + g_y + g_uh * u + g_vh * v
            grad_offset = g_offset + _outer_sum(rows, columns)
            grad_a, grad_b = _plane_gradient(pl, b, grad_u, grad_v, grad_cos, grad_sin, eps)
            return grad_offset, grad_a, grad_b, grad_h

        return (new_offset, new_mh, cos, p, basis), grad

    return memory_step


def _products(m, rows):
    """[..., k, N]: row i is m @ rows[..., i, :]."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # MatMul with a transposed operand: faster than this einsum on CPU
        # (an A/B of the whole λ=1 training step is in docs/BENCHMARKS.md).
        return tf.linalg.matmul(rows, m, transpose_b=True)
    return ops.einsum("...ij,...kj->...ki", m, rows)


def _outer_sum(x, y):
    """[..., N, N]: the sum over i of outer(x[..., i, :], y[..., i, :])."""
    return ops.einsum("...ki,...kj->...ij", x, y)


def memory_unstep(new_offset, factors):
    """D from D' = D + p^T basis and the factors (p, basis) of `memory_step`."""
    p, basis = factors
    return new_offset - _outer_sum(p, basis)


def _rank2_update(m, components, h=None, offset=False):
    u, v, cos, sin = components
    columns = ops.stack([u, v] if h is None else [u, v, h], axis=-1)
    products = ops.matmul(m, columns)
    if offset:  # m is M - I: M x = m x + x
        products = products + columns
    products = ops.unstack(products, axis=-1)
    mu, mv = products[0], products[1]
    p_u = (cos - 1.0) * mu + sin * mv
    p_v = (cos - 1.0) * mv - sin * mu
    p, basis = ops.stack([p_u, p_v], axis=-1), ops.stack([u, v], axis=-2)
    new_m = m + ops.matmul(p, basis)
    factors = (ops.swapaxes(p, -1, -2), basis)  # p as rows, as `memory_step` returns it
    if h is None:
        return new_m, None, factors
    return new_m, products[2] + p_u * _dot(u, h) + p_v * _dot(v, h), factors
