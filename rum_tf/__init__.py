"""rum_tf: the Rotational Unit of Memory for TensorFlow 2 / Keras 3."""

from rum_tf import official
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.cells import ARUMCell, FastSlowCell, LayerNormLSTMCell, RUMCell
from rum_tf.layers import RUM, Recurrent

__all__ = [
    "ARUMCell",
    "EUNNCell",
    "FastSlowCell",
    "GORUCell",
    "LayerNormLSTMCell",
    "RUM",
    "RUMCell",
    "Recurrent",
    "official",
]
__version__ = "0.1.0"
