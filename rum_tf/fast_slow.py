"""Fast-Slow RNNs (SPEC §3): the layers of the `--model`s `fs_rum`, `fs_lstm` and `fs_goru`.

`rum_tf.config.models` registers them with their options. `--units` is the slow cell's size; the fast cells
are `fast_layers` LN-LSTMs of `fast_units` (700 in the paper) sharing one state:

    fs_rum   slow cell RUMCell(units, **RUM options): FS-RUM-2 with units=1000,
             eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9
    fs_lstm  slow cell LayerNormLSTMCell(units): FS-LSTM-2 with units=400
    fs_goru  slow cell GORUCell(units, capacity, fft): the paper's FS-GORU baseline

All take, besides the usual `keras.layers.RNN` arguments, `fast_units`, `fast_layers`,
`keep_prob` (the FS-RNN dropout, 0.65) and `zoneout_keep_c` (the LN-LSTMs' c, 0.5);
`zoneout_keep_h` is every cell's h zoneout. The layer is `rum_tf.Recurrent`, which draws
the dropout and zoneout noise of all steps before the loop.
"""

from rum_tf.baselines import GORUCell
from rum_tf.cells import FastSlowCell, LayerNormLSTMCell, RUMCell
from rum_tf.layers import RUM, Recurrent


def fast_slow_layer(
    slow_cell,
    *,
    fast_units=700,
    fast_layers=2,
    keep_prob=0.65,
    zoneout_keep_h=0.9,
    zoneout_keep_c=0.5,
    seed=None,
    **layer_kwargs,
):
    """`Recurrent(FastSlowCell(fast LN-LSTMs, slow_cell))`."""
    fast = [
        LayerNormLSTMCell(
            fast_units, zoneout_keep_h=zoneout_keep_h, zoneout_keep_c=zoneout_keep_c, seed=seed, name=f"fast_{i}"
        )
        for i in range(fast_layers)
    ]
    cell = FastSlowCell(fast, slow_cell, keep_prob=keep_prob, seed=seed, name="fast_slow")
    return Recurrent(cell, **layer_kwargs)


def fs_rum(units, *, seed=None, **kwargs):
    """FS-RUM: the `RUM.CELL_ARGS` among `kwargs` go to the slow RUMCell, the others to `fast_slow_layer`."""
    rum_args = {k: kwargs.pop(k) for k in RUM.CELL_ARGS if k in kwargs}
    slow = RUMCell(units, seed=seed, name="slow", **rum_args)
    return fast_slow_layer(slow, zoneout_keep_h=rum_args.get("zoneout_keep_h"), seed=seed, **kwargs)


def fs_lstm(units, *, seed=None, zoneout_keep_h=None, zoneout_keep_c=0.5, **kwargs):
    zoneout = dict(zoneout_keep_h=zoneout_keep_h, zoneout_keep_c=zoneout_keep_c)
    slow = LayerNormLSTMCell(units, **zoneout, seed=seed, name="slow")
    return fast_slow_layer(slow, **zoneout, seed=seed, **kwargs)


def fs_goru(units, *, capacity=2, fft=False, zoneout_keep_h=None, **kwargs):
    slow = GORUCell(units, capacity=capacity, fft=fft, name="slow")
    return fast_slow_layer(slow, zoneout_keep_h=zoneout_keep_h, **kwargs)
