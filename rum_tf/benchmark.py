"""Training-step time of RUM against Keras GRU and LSTM of the same size.

    python -m rum_tf.benchmark [--xla=both|on|off] [--shapes=copying,recall50,recall100]

Every row is timed in the same run as its reference (Keras GRU at the same
shape and XLA setting), interleaved over several rounds; the table gives the
median milliseconds per training step and the ratio to that GRU. Peak memory
is shown where the backend reports it (GPU), else "n/a". A benchmark, not a
test: numbers depend on the machine and its load.
"""

import time

import keras
import numpy as np
from keras import ops
from absl import app, flags

from rum_tf import rotation
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.cells import RUMCell
from rum_tf.layers import RUM

SHAPES = {
    # name: (batch, time steps, units, input size, output classes, per-step output)
    "copying": (128, 220, 100, 10, 9, True),
    "recall50": (128, 53, 50, 26, 10, False),
    "recall100": (128, 53, 100, 26, 10, False),
}

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags; defined on demand so importing this module defines none."""
    flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "Compile the train step with XLA.")
    flags.DEFINE_list("shapes", list(SHAPES), f"Shapes to time, from {sorted(SHAPES)}.")
    flags.DEFINE_integer("steps", 5, "Timed training steps per round.", lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median round is reported.", lower_bound=1)
    flags.DEFINE_string("rows", "", "Comma-separated subset of rows to run (default all).")


class _FullProductRUMCell(RUMCell):
    """RUMCell whose λ=1 update is the official O(N³) matrix product."""

    def _associative_rotate(self, offset, embedded, target, h):
        eye = ops.eye(self.units, dtype=offset.dtype)
        memory, cos = rotation.associative_update_full(offset + eye, embedded, target, self.eps)
        return memory - eye, ops.squeeze(ops.matmul(memory, ops.expand_dims(h, -1)), -1), cos, None


class _FullProductRUM(RUM):
    cell_class = _FullProductRUMCell


class _AutodiffRotationRUMCell(RUMCell):
    """RUMCell whose λ=0 rotation is differentiated automatically, not by hand."""

    def _rotate(self, embedded, target, h):
        components = rotation.rotation_components(embedded, target, self.eps)
        return rotation.apply_rotation(components, h), components[2]


class _AutodiffRotationRUM(RUM):
    cell_class = _AutodiffRotationRUMCell


ROWS = {
    "Keras GRU": lambda n, seq: keras.layers.GRU(n, return_sequences=seq),
    "Keras LSTM": lambda n, seq: keras.layers.LSTM(n, return_sequences=seq, unit_forget_bias=True),
    "RUM λ=0": lambda n, seq: RUM(n, return_sequences=seq),
    "RUM λ=0 (all-step projection)": lambda n, seq: RUM(n, input_projection="sequence", return_sequences=seq),
    "RUM λ=0 (per-step projection)": lambda n, seq: RUM(n, input_projection="step", return_sequences=seq),
    "RUM λ=0 (autodiff rotation)": lambda n, seq: _AutodiffRotationRUM(n, return_sequences=seq),
    "RUM λ=1 (O(N²) update)": lambda n, seq: RUM(n, lambda_=1, eta=0.1, return_sequences=seq),
    "RUM λ=1 (full product)": lambda n, seq: _FullProductRUM(n, lambda_=1, eta=0.1, return_sequences=seq),
    "EUNN (capacity 2)": lambda n, seq: keras.layers.RNN(EUNNCell(n, capacity=2), return_sequences=seq),
    "GORU (capacity 2)": lambda n, seq: keras.layers.RNN(GORUCell(n, capacity=2), return_sequences=seq),
}


def _model(row, shape, xla):
    batch, steps, units, inputs, classes, per_step = SHAPES[shape]
    x = keras.Input((steps, inputs), batch_size=batch)
    y = keras.layers.Dense(classes)(ROWS[row](units, per_step)(x))
    model = keras.Model(x, y)
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=xla,
    )
    rng = np.random.default_rng(0)
    data = np.eye(inputs, dtype=np.float32)[rng.integers(0, inputs, (batch, steps))]
    target_shape = (batch, steps) if per_step else (batch,)
    return model, data, rng.integers(0, classes, target_shape)


def _peak_memory():
    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return None


def _reset_peak_memory():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")


def time_shape(shape, xla, rows, steps, rounds, log=print):
    """{row: (median ms per step, peak MiB or None)} for one shape and XLA setting."""
    built = {}
    for row in rows:
        model, x, y = _model(row, shape, xla)
        _reset_peak_memory()
        model.train_on_batch(x, y)  # compile and warm up
        model.train_on_batch(x, y)
        built[row] = (model, x, y, _peak_memory())
    times = {row: [] for row in rows}
    for r in range(rounds):
        for row in rows:
            model, x, y, _ = built[row]
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            float(np.asarray(loss))  # wait for the device
            times[row].append((time.perf_counter() - start) / steps * 1e3)
        log(f"  {shape} xla={xla} round {r + 1}/{rounds} done")
    return {row: (float(np.median(times[row])), built[row][3]) for row in rows}


def format_table(results):
    """Markdown table from {(shape, xla): {row: (ms, peak)}}; ratios against Keras GRU."""
    lines = [
        "| shape | XLA | model | ms / step | × Keras GRU | peak MiB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (shape, xla), rows in results.items():
        ref = rows.get("Keras GRU", (None,))[0]
        for row, (ms, peak) in rows.items():
            ratio = f"{ms / ref:.2f}" if ref else "n/a"
            mem = f"{peak:.0f}" if peak is not None else "n/a"
            lines.append(f"| {shape} | {'on' if xla else 'off'} | {row} | {ms:.1f} | {ratio} | {mem} |")
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = [s for s in FLAGS.shapes if s not in SHAPES]
    if unknown:
        raise app.UsageError(f"unknown shape(s) {unknown}; choose from {sorted(SHAPES)}")
    rows = [r.strip() for r in FLAGS.rows.split(",")] if FLAGS.rows else list(ROWS)
    if set(rows) - set(ROWS):
        raise app.UsageError(f"unknown row(s) {sorted(set(rows) - set(ROWS))}; choose from {list(ROWS)}")
    if "Keras GRU" not in rows:
        rows.insert(0, "Keras GRU")
    xla_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.xla]
    if keras.backend.backend() == "jax":
        xla_settings = [True]  # JAX without jit is op-by-op eager: not a fair row
    results = {}
    for shape in FLAGS.shapes:
        for xla in xla_settings:
            results[(shape, xla)] = time_shape(shape, xla, rows, FLAGS.steps, FLAGS.rounds)
    print(f"backend: {keras.backend.backend()}")
    print(format_table(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
