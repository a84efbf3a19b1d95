"""The EUNN transition (Jing et al. 2017, arXiv:1612.05231) and the EUNN cell.

The transition is a product of layers of 2×2 rotations on disjoint pairs of
units, followed (complex variant only) by a diagonal of phases:

    U h = D L_{K-1} ... L_1 L_0 h,     D = diag(exp(i ω)).

A pair (lo, hi) with angle θ (and phase φ in the complex variant) acts as

    [h_lo]    [cos θ   -exp(iφ) sin θ] [h_lo]
    [h_hi] <- [sin θ    exp(iφ) cos θ] [h_hi]

(real variant: φ = 0, a Givens rotation). Units left out of a layer's pairs
are unchanged. Two layer patterns, as in the official code:

* tunable (fft=False): K = capacity; even layers pair (0,1), (2,3), ...,
  odd layers pair (1,2), (3,4), .... Angles θ_0 [⌈K/2⌉, ⌊N/2⌋] for the even
  layers and θ_1 [⌊K/2⌋, ⌊(N-1)/2⌋] for the odd ones (φ_0, φ_1 alike).
* FFT (fft=True): K = ⌈log2 N⌉; layer k uses blocks of 2^s units, s = K - k,
  pairing unit j of a block with unit j + 2^(s-1) (strides 2^(K-1), ..., 2, 1).
  A final partial block of r units pairs its first r - 2^(s-1) units with its
  last r - 2^(s-1); the middle ones are unchanged. One flat angle vector θ_0
  (φ_0 alike) holds, layer after layer, the pairs of the full blocks (ordered
  by offset j, then block) and then those of the partial block.

Complex states are carried as [real; imaginary] halves of a real tensor.
"""

import math

import keras
import numpy as np
from keras import ops

from rum_tf.baselines.modrelu import complex_modrelu, modrelu
from rum_tf.cells import _float32_if_mixed, clone_initializer

_PACKAGE = "rum_tf"


def num_fft_layers(units):
    """⌈log2 N⌉, the number of layers of the FFT style (0 for N = 1)."""
    return (units - 1).bit_length()


def _check_sizes(units, capacity, fft):
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"units must be a positive integer, got {units!r}.")
    if not fft and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1):
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}.")


class EUNNLayout:
    """The static structure of an EUNN transition (NumPy arrays, no weights).

    Attributes:
      units, fft: as given.
      num_layers: K (capacity, or ⌈log2 N⌉ for the FFT style).
      param_shapes: [(name, shape)] of the angle variables, in the order their
        flattened values are concatenated (official variable names).
      num_angles: the total number of pairs, i.e. of θ (and of φ).
      pairs: per layer, a list of (lo, hi, angle index).
      partner: int [K, N], each unit's partner in its layer (itself if none).
      angle_index: int [K, N], index of the unit's pair angle in the flat angle
        vector; `num_angles` (a zero angle appended at run time) if unpaired.
      lower, upper: float [K, N], 1 where the unit is the lo / hi of its pair.
      complex_index: int [K, 3, 2N], the gathers of a complex layer
        (`eunn_coefficients`).
    """

    def __init__(self, units, capacity=2, fft=False):
        _check_sizes(units, capacity, fft)
        self.units = units
        self.fft = bool(fft)
        self.pairs = self._fft_pairs() if self.fft else self._tunable_pairs(capacity)
        self.num_layers = len(self.pairs)
        self.num_angles = sum(len(p) for p in self.pairs)
        k, n = self.num_layers, units
        self.partner = np.tile(np.arange(n, dtype=np.int32), (k, 1))
        self.angle_index = np.full((k, n), self.num_angles, dtype=np.int32)
        self.lower = np.zeros((k, n), np.float32)
        self.upper = np.zeros((k, n), np.float32)
        for layer, pairs in enumerate(self.pairs):
            for lo, hi, a in pairs:
                self.partner[layer, lo], self.partner[layer, hi] = hi, lo
                self.angle_index[layer, [lo, hi]] = a
                self.lower[layer, lo] = self.upper[layer, hi] = 1.0
        # Complex states [re; im] of size 2N gather [swap, partner, swapped partner].
        swap = np.concatenate([np.arange(n, 2 * n), np.arange(n)]).astype(np.int32)
        partner2 = np.concatenate([self.partner, self.partner + n], axis=1)
        self.complex_index = np.stack([np.tile(swap, (k, 1)), partner2, partner2[:, swap]], axis=1)

    def _tunable_pairs(self, capacity):
        n = self.units
        even_layers, odd_layers = (capacity + 1) // 2, capacity // 2
        size_even, size_odd = n // 2, (n - 1) // 2
        self.param_shapes = [("theta_0", (even_layers, size_even)), ("theta_1", (odd_layers, size_odd))]
        layers = []
        for layer in range(capacity):
            m = layer // 2
            if layer % 2 == 0:
                layers.append([(2 * p, 2 * p + 1, m * size_even + p) for p in range(size_even)])
            else:
                offset = even_layers * size_even + m * size_odd
                layers.append([(2 * p + 1, 2 * p + 2, offset + p) for p in range(size_odd)])
        return layers

    def _fft_pairs(self):
        n = self.units
        layers, angle = [], 0
        num = num_fft_layers(n)
        for layer in range(num):
            block = 2 ** (num - layer)
            half = block // 2
            full_blocks = n // block
            start = full_blocks * block  # the partial block, if any
            extra = max(0, n % block - half)
            pairs = []
            for j in range(half):
                for b in range(full_blocks):
                    pairs.append((b * block + j, b * block + j + half, angle + j * full_blocks + b))
            angle += half * full_blocks
            pairs += [(start + j, start + half + j, angle + j) for j in range(extra)]
            angle += extra
            layers.append(pairs)
        self.param_shapes = [("theta_0", (angle,))]
        return layers


def eunn_num_angles(units, capacity=2, fft=False):
    """Number of θ of a transition (= number of 2×2 rotations)."""
    return EUNNLayout(units, capacity, fft).num_angles


def eunn_param_count(units, capacity=2, fft=False, complex=False):
    """Trainable parameters of the transition: θ, plus φ and ω if complex."""
    angles = eunn_num_angles(units, capacity, fft)
    return 2 * angles + units if complex else angles


def eunn_coefficients(layout, theta, phi=None):
    """Per-layer coefficients of the transition (state independent).

    Real (phi None): (d, o), each [K, N], with h' = d * h + o * h[partner].

    Complex: (d, m), d [K, 2N] and m [K, 3, 2N], acting on h = [re; im] as
    h' = d * h + sum_j m[:, j] * h[layout.complex_index[:, j]]; the three
    gathers are h with its halves swapped, the partners, and the partners
    with halves swapped, so that each complex product is a real one.
    """
    zero = ops.zeros((1,), dtype=theta.dtype)
    # Unpaired units read the appended zero angle: d = 1, o = 0.
    angles = ops.take(ops.concatenate([theta, zero], axis=0), layout.angle_index, axis=0)
    cos, sin = ops.cos(angles), ops.sin(angles)
    lower = ops.convert_to_tensor(layout.lower, dtype=theta.dtype)
    upper = ops.convert_to_tensor(layout.upper, dtype=theta.dtype)
    if phi is None:
        return cos, (upper - lower) * sin
    phases = ops.take(ops.concatenate([phi, zero], axis=0), layout.angle_index, axis=0)
    cos_phi, sin_phi = ops.cos(phases), ops.sin(phases)
    # lo: d = cos θ, o = -exp(iφ) sin θ;  hi: d = exp(iφ) cos θ, o = sin θ.
    d_re, d_im = cos * ((1.0 - upper) + upper * cos_phi), cos * upper * sin_phi
    o_re, o_im = sin * (upper - lower * cos_phi), -sin * lower * sin_phi
    both = lambda a, b: ops.concatenate([a, b], axis=-1)  # noqa: E731
    # (a + ib)(x + iy) = [a x - b y; a y + b x]: -b, b multiply the swapped halves.
    mix = ops.stack([both(-d_im, d_im), both(o_re, o_re), both(-o_im, o_im)], axis=1)
    return both(d_re, d_re), mix


def eunn_apply(layout, coefficients, h):
    """Applies the layers to h: [B, N] real, or [B, 2N] = [re; im] with complex
    coefficients (from `eunn_coefficients`)."""
    diag, off = coefficients
    if len(off.shape) == 2:
        for k in range(layout.num_layers):
            h = diag[k] * h + off[k] * ops.take(h, layout.partner[k], axis=-1)
        return h
    for k in range(layout.num_layers):
        h = diag[k] * h + ops.sum(off[k] * ops.take(h, layout.complex_index[k], axis=-1), axis=-2)
    return h


def apply_phases(omega, h):
    """diag(exp(i ω)) h for h = [re; im] [B, 2N]."""
    n = omega.shape[0]
    cos, sin = ops.cos(omega), ops.sin(omega)
    swapped = ops.concatenate([h[:, n:], h[:, :n]], axis=-1)
    return ops.concatenate([cos, cos], axis=0) * h + ops.concatenate([-sin, sin], axis=0) * swapped


def eunn_transition(h, layout, theta, phi=None, omega=None):
    """U h: h [B, N] (real, phi None) or [B, 2N] = [re; im] (complex, phi given)."""
    h = eunn_apply(layout, eunn_coefficients(layout, theta, phi), h)
    return h if omega is None else apply_phases(omega, h)


class EUNNTransitionCell(keras.layers.Layer):
    """Base of the EUNN and GORU cells: owns the angles and applies U.

    Args:
      units: N.
      capacity: number of layers of the tunable style (ignored when fft).
      fft: FFT style instead of the tunable one.
      complex: unitary (θ, φ, ω) instead of orthogonal (θ) transition.
      angle_initializer: for θ, φ and ω; uniform in [-π, π].
      **kwargs: base layer arguments. A mixed-precision dtype policy is
        replaced by float32, as for the RUM cell (SPEC §6).
    """

    def __init__(
        self,
        units,
        capacity=2,
        fft=False,
        complex=False,
        angle_initializer=keras.initializers.RandomUniform(-math.pi, math.pi),
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=_float32_if_mixed(dtype), **kwargs)
        self.layout = EUNNLayout(units, capacity, fft)
        self.units = units
        self.capacity = capacity
        self.fft = bool(fft)
        self.complex = bool(complex)
        self.angle_initializer = keras.initializers.get(angle_initializer)

    @property
    def num_layers(self):
        """K: `capacity`, or ⌈log2 N⌉ for the FFT style."""
        return self.layout.num_layers

    def _build_transition(self):
        shapes = list(self.layout.param_shapes)
        if self.complex:
            shapes += [(name.replace("theta", "phi"), shape) for name, shape in self.layout.param_shapes]
        self._theta, self._phi = [], []
        for k, (name, shape) in enumerate(shapes):
            if math.prod(shape) == 0:  # e.g. θ_1 when capacity = 1
                continue
            w = self.add_weight(shape=shape, initializer=clone_initializer(self.angle_initializer, k), name=name)
            (self._theta if name.startswith("theta") else self._phi).append(w)
        self.omega = None
        if self.complex:
            self.omega = self.add_weight(
                shape=(self.units,), initializer=clone_initializer(self.angle_initializer, len(shapes)), name="omega"
            )

    def _flat(self, weights):
        if not weights:
            return ops.zeros((0,), dtype=self.compute_dtype)
        return ops.concatenate([ops.reshape(w, (-1,)) for w in weights], axis=0)

    def transition_coefficients(self):
        """`eunn_coefficients` of this cell's angles (state independent)."""
        theta = self._flat(self._theta)
        return eunn_coefficients(self.layout, theta, self._flat(self._phi) if self.complex else None)

    def transition(self, h, coefficients=None, matrix=None):
        """U h. h is [B, N], or [B, 2N] = [real; imag] in the complex variant.

        `coefficients` (from `transition_coefficients`) may be passed to reuse
        them over many steps; `matrix` (from `transition_matrix`) applies U as
        one matmul instead of the K layers.
        """
        if matrix is not None:
            return ops.matmul(h, matrix)
        if coefficients is None:
            coefficients = self.transition_coefficients()
        h = eunn_apply(self.layout, coefficients, h)
        return apply_phases(self.omega, h) if self.complex else h

    def transition_matrix(self):
        """U as the real matrix M [S, S] with U h = h M for row states h [B, S]
        (S = N, or 2N for [real; imag]): the transition of the identity's rows.

        A step then costs one matmul instead of K layers of gathers, and its
        gradient two: on CPU the EUNN and GORU training steps ran 1.5-3.6x
        faster (docs/BENCHMARKS.md). Equal to `transition` up to rounding.
        """
        return self.transition(ops.eye(self.state_size[0], dtype=self.compute_dtype))

    def loop_constants(self):
        """What `rum_tf.Recurrent` computes once per sequence and passes to every
        step's `call`: the transition as a matrix."""
        return {"transition_matrix": self.transition_matrix()}

    def get_initial_state(self, batch_size=None):
        size = self.state_size[0]
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype)]

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            capacity=self.capacity,
            fft=self.fft,
            angle_initializer=keras.initializers.serialize(self.angle_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EUNNCell(EUNNTransitionCell):
    """Efficient Unitary RNN cell (Jing et al. 2017), as in the official code.

        h' = modReLU(x W + U h, b)

    U is the EUNN transition (module docstring), W the input kernel (no bias)
    and b the modReLU bias. In the complex variant W = W_re + i W_im and h is
    complex.

    Args:
      units: N, the size of the hidden state.
      capacity: layers of the tunable style (2).
      fft: FFT style, ⌈log2 N⌉ layers (False).
      complex: unitary instead of orthogonal transition (False).
      input_kernel_initializer: W, uniform in [-0.01, 0.01].
      angle_initializer: θ, φ and ω, uniform in [-π, π].
      modrelu_bias_initializer: b, zeros.
      **kwargs: base layer arguments (name, dtype, ...).

    The state and the output are h: [B, N], or [B, 2N] = [real; imag] when
    complex. The input kernel is [d, N], or [d, 2N] = [W_re, W_im].
    `call(..., transition_matrix=M)` applies U as h M; `rum_tf.Recurrent`
    passes M, built once per sequence (`keras.layers.RNN` does not, and each
    step applies the K layers).
    """

    def __init__(
        self,
        units,
        capacity=2,
        fft=False,
        complex=False,
        input_kernel_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
        angle_initializer=keras.initializers.RandomUniform(-math.pi, math.pi),
        modrelu_bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(units, capacity, fft, complex, angle_initializer, **kwargs)
        self.input_kernel_initializer = keras.initializers.get(input_kernel_initializer)
        self.modrelu_bias_initializer = keras.initializers.get(modrelu_bias_initializer)
        size = 2 * units if self.complex else units
        self.state_size = [size]
        self.output_size = size

    def build(self, input_shape):
        self.input_kernel = self.add_weight(
            shape=(input_shape[-1], self.state_size[0]),
            initializer=clone_initializer(self.input_kernel_initializer, 0),
            name="input_kernel",
        )
        self.modrelu_bias = self.add_weight(
            shape=(self.units,), initializer=clone_initializer(self.modrelu_bias_initializer, 0), name="modrelu_bias"
        )
        self._build_transition()

    def call(self, inputs, states, training=False, transition_matrix=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        z = ops.matmul(inputs, self.input_kernel) + self.transition(h, matrix=transition_matrix)
        if self.complex:
            n = self.units
            re, im = complex_modrelu(z[:, :n], z[:, n:], self.modrelu_bias)
            new_h = ops.concatenate([re, im], axis=-1)
        else:
            new_h = modrelu(z, self.modrelu_bias)
        return new_h, [new_h]

    def get_config(self):
        config = super().get_config()
        config.update(
            complex=self.complex,
            input_kernel_initializer=keras.initializers.serialize(self.input_kernel_initializer),
            modrelu_bias_initializer=keras.initializers.serialize(self.modrelu_bias_initializer),
        )
        return config
