"""Keras' own layer test harness over `RUM`, over `keras.layers.RNN` of every rum_tf cell, and over
`rum_tf.Recurrent` of the EUNN and GORU cells.

`run_layer_test` checks shapes, (de)serialisation, masking support, a compiled
training step (`fit`), and a mixed-precision build and call.
"""

import keras
from absl.testing import parameterized

from rum_tf import RUM, EUNNCell, FastSlowCell, GORUCell, LayerNormLSTMCell, Recurrent, RUMCell
from rum_tf.compat import keras_testing

testing = keras_testing()

B, T, D, N = 2, 4, 3, 5

# (name, cell factory, trainable weights); the cells are built fresh for each test.
CELLS = [
    ("rum_lambda0", lambda: RUMCell(N, eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9, seed=1), 7),
    ("rum_lambda1", lambda: RUMCell(N, lambda_=1, eta=0.5, zoneout_keep_h=0.9, dropout=0.2, seed=1), 3),
    ("ln_lstm", lambda: LayerNormLSTMCell(N, seed=1), 6),
    ("fast_slow", lambda: FastSlowCell([LayerNormLSTMCell(N), LayerNormLSTMCell(N)], RUMCell(4, eta=1.0)), 15),
    ("eunn", lambda: EUNNCell(N, capacity=2), 4),
    ("goru", lambda: GORUCell(N, capacity=2), 7),
]


class KerasHarnessTest(testing.TestCase):
    @parameterized.named_parameters(
        ("lambda0", dict(lambda_=0), 3),
        ("lambda1_eta", dict(lambda_=1, eta=0.1), 3),
        ("layer_norm_zoneout_dropout", dict(eta=1.0, use_layer_norm=True, zoneout_keep_h=0.9, dropout=0.2), 7),
    )
    def test_rum_layer(self, kwargs, num_weights):
        self.run_layer_test(
            RUM,
            init_kwargs=dict(units=N, return_sequences=True, **kwargs),
            input_shape=(B, T, D),
            expected_output_shape=(B, T, N),
            expected_num_trainable_weights=num_weights,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    # keras.layers.RNN of every cell, and rum_tf.Recurrent of those that --model=eunn / goru wrap in it
    # (the transition as one matrix per sequence).
    @parameterized.named_parameters(
        [(name, keras.layers.RNN, make, n) for name, make, n in CELLS]
        + [(f"recurrent_{name}", Recurrent, make, n) for name, make, n in CELLS if name in ("eunn", "goru")]
    )
    def test_rnn_of_cell(self, layer_class, make, num_weights):
        cell = make()
        self.run_layer_test(
            layer_class,
            init_kwargs=dict(cell=cell, return_sequences=True),
            input_shape=(B, T, D),
            expected_output_shape=(B, T, cell.output_size),
            expected_num_trainable_weights=num_weights,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_rum_return_state(self):
        self.run_layer_test(
            RUM,
            init_kwargs=dict(units=N, lambda_=1, return_state=True),
            input_shape=(B, T, D),
            expected_output_shape=((B, N), (B, N), (B, N * N)),
            supports_masking=True,
            run_training_check=False,  # the harness trains on one output
        )
