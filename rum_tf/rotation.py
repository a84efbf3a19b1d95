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

from keras import ops

EPS = 1e-12
SIN_SQUARED_FLOOR = 1e-14


def l2_normalize(x, eps=EPS):
    """x / sqrt(max(sum(x^2), eps)) over the last axis, as tf.nn.l2_normalize."""
    square_sum = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(square_sum, eps))


def _dot(x, y):
    return ops.sum(x * y, axis=-1, keepdims=True)


def rotation_components(a, b, eps=EPS):
    """The plane and angle of R(a, b).

    Args:
      a, b: tensors [..., N].
      eps: the normalisation epsilon (1e-12 in the official code).

    Returns:
      (u, v, cos, sin): u, v [..., N] orthonormal basis of span{a, b} with u
      along a; cos, sin [..., 1] of the angle from a to b.
    """
    u = l2_normalize(a, eps)
    cos = _dot(u, l2_normalize(b, eps))
    sin = ops.sqrt(ops.maximum(1.0 - ops.square(cos), SIN_SQUARED_FLOOR))
    v = l2_normalize(b - _dot(u, b) * u, eps)
    return u, v, cos, sin


def rotate(a, b, h, eps=EPS):
    """R(a, b) h without forming R: O(N) per example. a, b, h: [..., N]."""
    return apply_rotation(rotation_components(a, b, eps), h)


def apply_rotation(components, h):
    """R h for R given by `rotation_components` (to reuse them, e.g. for cos)."""
    u, v, cos, sin = components
    uh = _dot(u, h)
    vh = _dot(v, h)
    return h + (cos - 1.0) * (uh * u + vh * v) + sin * (uh * v - vh * u)


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

    M R = M + (cos - 1)((M u) u^T + (M v) v^T) + sin ((M v) u^T - (M u) v^T).

    Args:
      m: [..., N, N] the associative memory.
      a, b: [..., N].

    Returns:
      (M R(a, b), cos) with cos [..., 1], the angle's cosine.
    """
    u, v, cos, sin = rotation_components(a, b, eps)
    mu = ops.squeeze(ops.matmul(m, ops.expand_dims(u, -1)), -1)
    mv = ops.squeeze(ops.matmul(m, ops.expand_dims(v, -1)), -1)
    c = ops.expand_dims(cos, -1)
    s = ops.expand_dims(sin, -1)
    update = (c - 1.0) * (_outer(mu, u) + _outer(mv, v)) + s * (
        _outer(mv, u) - _outer(mu, v)
    )
    return m + update, cos


def associative_update_full(m, a, b, eps=EPS):
    """M R(a, b) by the full O(N^3) matrix product, as the official code does.

    Kept for benchmarks and as a reference; returns the same as
    `associative_update`.
    """
    components = rotation_components(a, b, eps)
    return ops.matmul(m, _operator_from_components(*components)), components[2]
