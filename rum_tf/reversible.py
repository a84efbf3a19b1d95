"""The λ=1 recurrence with a reversible, hand-written backward pass.

Automatic differentiation of the λ=1 loop keeps the memory M_t of every step
(T B N^2 floats) and replays every op of the rank-2 update backwards. Here the
forward pass keeps, per step, only B N-sized tensors: h_{t-1} and the factors
(p, basis) of the memory's rank-2 update D_t = D_{t-1} + p^T basis
(`rotation.memory_step`, D = M - I), plus the final D_T. The backward pass
walks t = T ... 1: it rebuilds D_{t-1} = D_t - p^T basis (`rotation.memory_unstep`,
O(N^2)), recomputes step t from (x_t, h_{t-1}, D_{t-1}) and back-propagates
through that one step with the backend's local VJP, accumulating the weight
gradients. Memory is O(B N^2 + T B N) whatever T is.

Why the stored factors rather than M_t R_t^T: subtracting the same increment
that was added undoes the step to within one rounding, also where R_t is not
orthogonal (an all-zero input gives e = 0, where the guards of SPEC §6 make
R a projection and M_{t-1} cannot be recovered from M_t). The float32 drift
this leaves is measured in docs/BENCHMARKS.md.

`run` is backend-neutral (`keras.ops`); the two backend-specific pieces, the
loop (`_scan`) and the local VJP (`_vjp`), are the functions at the end of
this module. TensorFlow and JAX are supported (`supported()`); other backends
use automatic differentiation of the ordinary loop.
"""

import keras
from keras import ops

from rum_tf import rotation


def supported():
    """Whether this backend has the reversible path."""
    return keras.backend.backend() in ("tensorflow", "jax")


def run(step, xs, h0, d0, weights, output_size, consts=(), mask=None, zero_output_for_mask=False):
    """Runs `step` over time with the reversible backward pass.

    Args:
      step: fn(weights, x, c, h, d) -> (output, h', d', (p, basis)): one step,
        with x and c the lists of this step's slices of `xs` and `consts`, d the
        memory offset [B, N*N] and (p, basis) [B, 2, N] the factors of its
        update (`rotation.memory_step`, undone by `rotation.memory_unstep`).
      xs: list of time-major [T, B, ...] tensors the gradient flows to.
      h0, d0: the initial state [B, N], [B, N*N].
      weights: list of tensors the gradient flows to (not sliced by time).
      output_size: the width of the step's output.
      consts: list of time-major tensors without gradient (zoneout noise).
      mask: None or a time-major [T, B, 1] float (1: run the step; 0: keep
        the state, as Keras' RNN does).
      zero_output_for_mask: masked steps output zeros instead of the
        previous output.

    Returns:
      (outputs [T, B, out], h_T, d_T).
    """
    n_x, n_c, n_w = len(xs), len(consts), len(weights)
    masked = mask is not None

    def keep_masked(keep, new, old):
        return ops.where(keep > 0, new, old)

    @ops.custom_gradient
    def loop(*args):
        xs, consts, rest = list(args[:n_x]), list(args[n_x : n_x + n_c]), args[n_x + n_c :]
        mask, rest = (rest[0], rest[1:]) if masked else (None, rest)
        h0, d0, weights = rest[0], rest[1], list(rest[2:])
        batch, n = h0.shape[0], h0.shape[-1]
        out0 = ops.zeros((ops.shape(h0)[0], output_size), h0.dtype)
        ys_shapes = [(batch, output_size), (batch, n), (batch, 2, n), (batch, 2, n)]

        def forward(carry, sliced):
            h, d, previous = carry
            x, c = sliced[:n_x], sliced[n_x : n_x + n_c]
            out, new_h, new_d, (p, basis) = step(weights, x, c, h, d)
            if masked:
                keep = sliced[-1]
                new_h = keep_masked(keep, new_h, h)
                new_d = keep_masked(keep, new_d, d)
                out = keep_masked(keep, out, ops.zeros_like(out) if zero_output_for_mask else previous)
                p = p * keep[:, :, None]  # a masked step's increment is zero
            return (new_h, new_d, out), (out, h, p, basis)

        sliced = xs + consts + ([mask] if masked else [])
        (h_last, d_last, _), (outputs, hs, ps, bases) = _scan(forward, (h0, d0, out0), sliced, ys_shapes)

        def grad(*upstream, **kwargs):
            if "upstream" in kwargs:  # JAX passes one tuple, TensorFlow one argument per output
                upstream = kwargs["upstream"]
            elif len(upstream) == 1:
                upstream = upstream[0]
            g_outputs, g_h, g_d = (
                ops.zeros_like(like) if g is None else g for g, like in zip(upstream, (outputs, h_last, d_last))
            )

            def backward(carry, sliced):
                g_h, g_d, d, g_later, g_weights = carry
                x, c = sliced[:n_x], sliced[n_x : n_x + n_c]
                h_prev, p, basis, g_out = sliced[n_x + n_c : n_x + n_c + 4]
                n = basis.shape[-1]
                d_prev = ops.reshape(rotation.memory_unstep(ops.reshape(d, (-1, n, n)), (p, basis)), (-1, n * n))
                g_out = g_out + g_later
                if masked:  # a masked step passes the gradients through and adds nothing
                    keep = sliced[-1]
                    g_step = (g_out * keep, g_h * keep, g_d * keep)
                else:
                    g_step = (g_out, g_h, g_d)
                g_x, g_h_prev, g_d_prev, g_w = _vjp(
                    lambda x, h, d, w: step(w, x, c, h, d)[:3], (x, h_prev, d_prev, weights), g_step
                )
                if masked:
                    g_h_prev = keep_masked(keep, g_h_prev, g_h)
                    g_d_prev = keep_masked(keep, g_d_prev, g_d)
                    g_later = ops.zeros_like(g_out) if zero_output_for_mask else g_out * (1.0 - keep)
                g_weights = [a + b for a, b in zip(g_weights, g_w)]
                return (g_h_prev, g_d_prev, d_prev, g_later, g_weights), tuple(g_x)

            sliced = xs + consts + [hs, ps, bases, g_outputs] + ([mask] if masked else [])
            g_later = ops.zeros_like(g_outputs[0])
            g_weights = [ops.zeros_like(w) for w in weights]
            (g_h0, g_d0, _, _, g_weights), g_xs = _scan(
                backward, (g_h, g_d, d_last, g_later, g_weights), sliced, [x.shape[1:] for x in xs], reverse=True
            )
            no_grad = [ops.zeros_like(c) for c in consts] + ([ops.zeros_like(mask)] if masked else [])
            return tuple(list(g_xs) + no_grad + [g_h0, g_d0] + list(g_weights))

        return (outputs, h_last, d_last), grad

    args = list(xs) + list(consts) + ([mask] if masked else []) + [h0, d0] + list(weights)
    assert len(args) == n_x + n_c + masked + 2 + n_w
    return loop(*args)


# The backend-specific part: a scan over the leading axis and a local VJP.


def _scan(body, carry, sliced, ys_shapes, reverse=False):
    """(final carry, stacked ys) of body(carry, [x[t] for x in sliced]) -> (carry, ys tuple) over t.

    ys_shapes: the shape of each of the per-step ys (TensorFlow's arrays need it for XLA).
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.lax.scan(lambda carry, x: body(carry, list(x)), carry, tuple(sliced), reverse=reverse)
    import tensorflow as tf

    steps = tf.shape(sliced[0])[0]
    static_steps = sliced[0].shape[0]
    inputs = [tf.TensorArray(x.dtype, size=steps, element_shape=x.shape[1:]).unstack(x) for x in sliced]
    flat_carry = tf.nest.flatten(carry)
    dtype = flat_carry[0].dtype
    outputs = [tf.TensorArray(dtype, size=steps, element_shape=shape) for shape in ys_shapes]

    def loop_body(i, flat_carry, outputs):
        t = steps - 1 - i if reverse else i
        new_carry, ys = body(tf.nest.pack_sequence_as(carry, flat_carry), [x.read(t) for x in inputs])
        outputs = [o.write(t, y) for o, y in zip(outputs, ys)]
        return i + 1, tf.nest.flatten(new_carry), outputs

    _, flat_carry, outputs = tf.while_loop(
        lambda i, *_: i < steps,
        loop_body,
        (tf.constant(0), flat_carry, outputs),
        maximum_iterations=static_steps,
    )
    stacked = [o.stack() for o in outputs]
    for s in stacked:
        s.set_shape([static_steps] + s.shape[1:].as_list())
    return tf.nest.pack_sequence_as(carry, flat_carry), tuple(stacked)


def _vjp(fn, primals, cotangents):
    """The gradients of sum(cotangents * fn(*primals)) with respect to each primal (nested)."""
    if keras.backend.backend() == "jax":
        import jax

        _, pullback = jax.vjp(fn, *primals)
        return pullback(tuple(cotangents))
    import tensorflow as tf

    flat = tf.nest.flatten(primals)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(flat)
        outputs = fn(*tf.nest.pack_sequence_as(primals, flat))
    grads = tape.gradient(
        list(outputs),
        flat,
        output_gradients=list(cotangents),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return tf.nest.pack_sequence_as(primals, grads)
