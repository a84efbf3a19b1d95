"""NumPy reference of the EUNN transition and of the EUNN and GORU cells.

Written from the equations (docs/BASELINES.md), independently of
rum_tf.baselines: the transition is built as a full N×N matrix, one 2×2
rotation at a time, and the cells act on column vectors in float64/complex128.
Weights come as {variable name: array}, the names of the Keras cells.
"""

import math

import numpy as np

MODRELU_EPS = 1e-5


def rotation(n, lo, hi, theta, phi=0.0):
    """N×N identity with the pair (lo, hi) rotated by θ, phase φ on the hi row."""
    g = np.eye(n, dtype=complex)
    e = np.exp(1j * phi)
    g[lo, lo], g[lo, hi] = np.cos(theta), -e * np.sin(theta)
    g[hi, lo], g[hi, hi] = np.sin(theta), e * np.cos(theta)
    return g


def tunable_rotations(n, capacity, weights):
    """Per layer, the (lo, hi, θ, φ) of the tunable style."""
    layers = []
    for layer in range(capacity):
        m, odd = divmod(layer, 2)
        name = "_1" if odd else "_0"
        theta = weights.get("theta" + name)
        phi = weights.get("phi" + name)
        count = (n - 1) // 2 if odd else n // 2
        pairs = []
        for p in range(count):
            lo = 2 * p + odd
            pairs.append((lo, lo + 1, theta[m, p], 0.0 if phi is None else phi[m, p]))
        layers.append(pairs)
    return layers


def fft_rotations(n, weights):
    """Per layer, the (lo, hi, θ, φ) of the FFT style (strides 2^(K-1), ..., 1)."""
    theta = weights.get("theta_0", np.zeros(0))
    phi = weights.get("phi_0")
    num = math.ceil(math.log2(n)) if n > 1 else 0
    layers, offset = [], 0
    for layer in range(num):
        stride = 2 ** (num - layer - 1)
        blocks = n // (2 * stride)
        pairs = []
        # Full blocks: the angle of (block b, offset j) is θ[offset + j * blocks + b].
        for b in range(blocks):
            for j in range(stride):
                a = offset + j * blocks + b
                pairs.append((2 * stride * b + j, 2 * stride * b + j + stride, a))
        offset += stride * blocks
        # The partial block: its first r - stride units pair with its last ones.
        start = 2 * stride * blocks
        for j in range(max(0, n - start - stride)):
            pairs.append((start + j, start + stride + j, offset))
            offset += 1
        layers.append([(lo, hi, theta[a], 0.0 if phi is None else phi[a]) for lo, hi, a in pairs])
    assert offset == theta.size
    return layers


def eunn_matrix(n, capacity, fft, weights):
    """The transition U (complex array [N, N]; real-valued when φ, ω are absent)."""
    layers = fft_rotations(n, weights) if fft else tunable_rotations(n, capacity, weights)
    u = np.eye(n, dtype=complex)
    for pairs in layers:
        touched = [unit for lo, hi, _, _ in pairs for unit in (lo, hi)]
        assert len(touched) == len(set(touched)), "pairs of a layer must be disjoint"
        for lo, hi, theta, phi in pairs:
            u = rotation(n, lo, hi, theta, phi) @ u
    if "omega" in weights:
        u = np.diag(np.exp(1j * weights["omega"])) @ u
    return u


def modrelu(z, bias, eps=MODRELU_EPS):
    """Real: sign(z) relu(|z| + eps + b).  Complex: z / (|z| + eps) relu(|z| + eps + b)."""
    if np.iscomplexobj(z):
        norm = np.abs(z) + eps
        return z / norm * np.maximum(norm + bias, 0.0)
    return np.sign(z) * np.maximum(np.abs(z) + eps + bias, 0.0)


def eunn_step(x, h, weights, n, capacity=2, fft=False, complex=False):
    """One EUNN step on one example; h (and the result) are [re; im] if complex."""
    u = eunn_matrix(n, capacity, fft, weights)
    w = weights["input_kernel"]
    if complex:
        z = x @ (w[:, :n] + 1j * w[:, n:]) + u @ (h[:n] + 1j * h[n:])
        out = modrelu(z, weights["modrelu_bias"])
        return np.concatenate([out.real, out.imag])
    return modrelu(x @ w + (u @ h).real, weights["modrelu_bias"])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def goru_step(x, h, weights, n, capacity=2, fft=False):
    """One GORU step on one example."""
    u = eunn_matrix(n, capacity, fft, weights).real
    xw = x @ weights["input_kernel"]
    hw = h @ weights["recurrent_kernel"]
    r = sigmoid(xw[n : 2 * n] + hw[:n] + weights["reset_bias"])
    g = sigmoid(xw[2 * n :] + hw[n:] + weights["update_bias"])
    c = modrelu(r * (u @ h) + xw[:n], weights["modrelu_bias"])
    return g * h + (1.0 - g) * c
