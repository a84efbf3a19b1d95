"""Independent NumPy reference of SPEC §1-§3, in float64, one example at a time.

Written from the equations of SPEC, not from rum_tf: R is built as the matrix
I - uu^T - vv^T + [u v] G(θ) [u v]^T, the λ=1 memory is updated by the full
matrix product, and layer norm uses explicit per-block moments.
"""

import numpy as np

EPS = 1e-12
LN_EPS = 1e-3


def l2n(x, eps=EPS):
    return x / np.sqrt(max(float(np.sum(x * x)), eps))


def rotation_matrix(a, b, eps=EPS):
    """R(a, b) for single vectors a, b (float64)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = a.shape[0]
    u = l2n(a, eps)
    cos = float(u @ l2n(b, eps))
    sin = np.sqrt(max(1.0 - cos * cos, 0.0))
    v = l2n(b - (u @ b) * u, eps)
    basis = np.stack([u, v], axis=1)  # N x 2
    givens = np.array([[cos, -sin], [sin, cos]])
    return np.eye(n) - np.outer(u, u) - np.outer(v, v) + basis @ givens @ basis.T, cos


def layer_norm(x, gamma, beta, blocks=1):
    out = []
    for part, g, b in zip(np.split(x, blocks), np.split(gamma, blocks), np.split(beta, blocks)):
        mean = part.mean()
        var = ((part - mean) ** 2).mean()
        out.append((part - mean) / np.sqrt(var + LN_EPS) * g + b)
    return np.concatenate(out)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow for large |x|


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}


def rum_step(
    x,
    h,
    m,
    w,
    lambda_=0,
    eta=None,
    activation="relu",
    layer_norm_on=False,
    zoneout_keep_h=None,
    update_gate=True,
    eps=EPS,
    zoneout_mask=None,
    recurrent_mask=None,
):
    """One RUM step for one example: at inference (zoneout expectation), or in
    training with the 0/1 `zoneout_mask` [N] (1 keeps the new unit) and the
    recurrent dropout mask `recurrent_mask` [N] (scaled, as the cell takes it).

    w: dict with gate_kernel (d+N, 2N), gate_bias (2N), embedding_kernel (d, N),
    embedding_bias (N or None) and, with layer norm, gate_ln_gamma/beta (2N)
    (N instead of 2N for the gates when update_gate is False),
    candidate_ln_gamma/beta (N). m is the λ=1 memory (ignored for λ=0).
    Returns (cos θ, new h, new m).
    """
    x = np.asarray(x, np.float64)
    n = h.shape[0]
    # recurrent_mask: dropout on h where it meets the gate kernel's state rows only.
    h_gates = h if recurrent_mask is None else h * recurrent_mask
    g = np.concatenate([x, h_gates]) @ w["gate_kernel"] + w["gate_bias"]
    if update_gate:  # without the update gate the official cell has only the r half
        r, u = g[:n], sigmoid(g[n:])
        if layer_norm_on:
            ru = layer_norm(np.concatenate([r, u]), w["gate_ln_gamma"], w["gate_ln_beta"], blocks=2)
            r, u = ru[:n], ru[n:]
    else:
        r = g
        if layer_norm_on:
            r = layer_norm(r, w["gate_ln_gamma"], w["gate_ln_beta"])
    e = x @ w["embedding_kernel"]
    if w.get("embedding_bias") is not None:
        e = e + w["embedding_bias"]
    rot, cos = rotation_matrix(e, r, eps)
    if lambda_ == 0:
        h_tilde = rot @ h
    else:
        m = m @ rot
        h_tilde = m @ h
    pre = e + h_tilde
    if layer_norm_on:
        pre = layer_norm(pre, w["candidate_ln_gamma"], w["candidate_ln_beta"])
    c = ACTIVATIONS[activation](pre)
    new_h = u * h + (1 - u) * c if update_gate else c
    if eta is not None:
        new_h = eta * l2n(new_h, eps)
    if zoneout_keep_h is not None:
        keep = zoneout_keep_h if zoneout_mask is None else zoneout_mask
        new_h = keep * new_h + (1 - keep) * h
    return cos, new_h, m


def rum_sequence(xs, w, track_angle=False, zoneout_masks=None, step_mask=None, **kwargs):
    """Run RUM over xs [T, d] for one example from h = 0, M = I.

    zoneout_masks: None, or the training zoneout masks [T, N] (0/1).
    step_mask: None, or [T] booleans; a False step is skipped as Keras' RNN
      masks it: h and M stay, and its output repeats the previous one (zeros
      before the first step).
    Returns (outputs [T, N or N+1], final h, final M).
    """
    n = w["embedding_kernel"].shape[1]
    h, m = np.zeros(n), np.eye(n)
    output = np.zeros(n + 1 if track_angle else n)
    outputs = []
    for t, x in enumerate(xs):
        if step_mask is None or step_mask[t]:
            mask = None if zoneout_masks is None else zoneout_masks[t]
            cos, h, m = rum_step(x, h, m, w, zoneout_mask=mask, **kwargs)
            output = np.concatenate([[cos], h]) if track_angle else h
        outputs.append(output)
    return np.stack(outputs), h, m


def ln_lstm_step(x, h, c, w, keep_h=0.9, keep_c=0.5, forget_bias=1.0):
    """One LN-LSTM step at inference (zoneout expectation)."""
    n = h.shape[0]
    z = np.concatenate([x, h]) @ w["kernel"] + w["bias"]
    z = layer_norm(z, w["gate_ln_gamma"], w["gate_ln_beta"], blocks=4)
    i, j, f, o = (z[k * n : (k + 1) * n] for k in range(4))
    new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
    new_h = np.tanh(layer_norm(new_c, w["cell_ln_gamma"], w["cell_ln_beta"])) * sigmoid(o)
    if keep_h is not None:
        new_h = keep_h * new_h + (1 - keep_h) * h
    if keep_c is not None:
        new_c = keep_c * new_c + (1 - keep_c) * c
    return new_h, new_c


def fast_slow_sequence(xs, fast_weights, slow_weights, n_fast, slow_rum_kwargs=None):
    """FS-RNN at inference (no dropout) with LN-LSTM fast cells.

    The slow cell is an LN-LSTM when slow_rum_kwargs is None, else a RUM cell
    (λ=0 only) with those keyword arguments of `rum_step`.
    """
    nf = fast_weights[0]["bias"].shape[0] // 4
    hf, cf = np.zeros(nf), np.zeros(nf)
    if slow_rum_kwargs is None:
        ns = slow_weights["bias"].shape[0] // 4
        hs, cs = np.zeros(ns), np.zeros(ns)
    else:
        ns = slow_weights["embedding_kernel"].shape[1]
        hs = np.zeros(ns)
    outputs = []
    for x in xs.astype(np.float64):
        hf, cf = ln_lstm_step(x, hf, cf, fast_weights[0])
        if slow_rum_kwargs is None:
            hs, cs = ln_lstm_step(hf, hs, cs, slow_weights)
        else:
            _, hs, _ = rum_step(hf, hs, None, slow_weights, **slow_rum_kwargs)
        hf, cf = ln_lstm_step(hs, hf, cf, fast_weights[1])
        for k in range(2, n_fast):
            hf, cf = ln_lstm_step(np.zeros(1), hf, cf, fast_weights[k])
        outputs.append(hf)
    return np.stack(outputs)
