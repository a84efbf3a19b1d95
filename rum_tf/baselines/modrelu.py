"""modReLU (Arjovsky et al. 2016) as the official baselines use it.

For real z:    modrelu(z) = sign(z) * relu(|z| + eps + b)
For complex z: modrelu(z) = z / (|z| + eps) * relu(|z| + eps + b)

with eps = 1e-5 (baselineModels/modrelu.py of the official RUM code; the
standalone EUNN-tensorflow repository used 0.01). Complex numbers are carried
as (real, imaginary) pairs of real tensors so that the same code runs on every
Keras backend.
"""

from keras import ops

MODRELU_EPS = 1e-5
# |z| is computed as sqrt(max(re² + im², _MIN_SQUARE)): the same value wherever
# |z| > 1e-6, and a finite gradient at z = 0 (sqrt has an infinite one there,
# which gives NaN gradients for a zero pre-activation, e.g. a zero input and
# the zero initial state).
_MIN_SQUARE = 1e-12


def modrelu(z, bias, eps=MODRELU_EPS):
    """Real modReLU: sign(z) * relu(|z| + eps + bias)."""
    return ops.sign(z) * ops.relu(ops.abs(z) + eps + bias)


def complex_modrelu(real, imag, bias, eps=MODRELU_EPS):
    """Complex modReLU of z = real + i imag; returns (real, imag) of the result."""
    norm = ops.sqrt(ops.maximum(ops.square(real) + ops.square(imag), _MIN_SQUARE)) + eps
    scale = ops.relu(norm + bias) / norm
    return real * scale, imag * scale
