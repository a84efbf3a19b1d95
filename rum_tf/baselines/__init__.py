"""Baselines of the official code: the EUNN and GORU cells (docs/BASELINES.md)."""

from rum_tf.baselines.eunn import (
    EUNNCell,
    EUNNLayout,
    apply_phases,
    eunn_apply,
    eunn_coefficients,
    eunn_num_angles,
    eunn_param_count,
    eunn_transition,
    num_fft_layers,
)
from rum_tf.baselines.goru import GORUCell
from rum_tf.baselines.modrelu import complex_modrelu, modrelu

__all__ = [
    "EUNNCell",
    "EUNNLayout",
    "GORUCell",
    "apply_phases",
    "complex_modrelu",
    "eunn_apply",
    "eunn_coefficients",
    "eunn_num_angles",
    "eunn_param_count",
    "eunn_transition",
    "modrelu",
    "num_fft_layers",
]
