"""Training-step time of RUM against Keras GRU and LSTM of the same size.

    python -m tasks.benchmark [--xla=both|on|off] [--shapes=copying,recall50,recall100]
    python -m tasks.benchmark --memory [--memory_T=100,400,1600]   # peak RSS per T
    python -m tasks.benchmark --drift [--drift_T=50,200,1000]      # λ=1 float32 drift
    python -m tasks.benchmark --profile --shapes=copying --rows="RUM λ=1"  # TF: time per op type
    python -m tasks.benchmark --floor ...   # also: bandwidth and λ=1's fused-kernel floor per shape

Every row is timed in the same run as its reference (Keras GRU at the same
shape and XLA setting), interleaved over several rounds. The first table takes
each row at its fastest XLA setting and compares it with the fastest setting of
Keras GRU and of RUM λ=0 (best against best); the second gives every setting:
the median milliseconds per training step and the ratios to the GRU and RUM
λ=0 of the same setting. Peak memory is shown where TensorFlow reports it (GPU), else "n/a";
`--memory` measures the peak resident memory of a fresh process per row and T
instead. `--drift` measures the float32 error of λ=1's reversible backward
pass. `--profile` (TensorFlow) traces a few training steps of each row with
the TensorFlow profiler and sums the time of the executed ops by op type. A
benchmark, not a test: numbers depend on the machine and its load.
"""

import json
import pathlib
import resource
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
from absl import app, flags
from keras import ops

from rum_tf import rotation
from rum_tf.baselines import EUNNCell, GORUCell
from rum_tf.layers import RUM, Recurrent

SHAPES = {
    # name: (batch, time steps, units, input size, output classes, per-step output)
    "copying": (128, 220, 100, 10, 9, True),
    "recall50": (128, 53, 50, 26, 10, False),
    "recall100": (128, 53, 100, 26, 10, False),
}

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]


def define_flags():
    """The command's flags; defined on demand so importing this module defines none."""
    flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "Compile the train step with XLA.")
    flags.DEFINE_list("shapes", list(SHAPES), f"Shapes to time, from {sorted(SHAPES)}.")
    flags.DEFINE_integer("steps", 5, "Timed training steps per round.", lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median round is reported.", lower_bound=1)
    flags.DEFINE_string("rows", "", "Comma-separated subset of rows to run (default all).")
    flags.DEFINE_bool("memory", False, "Measure peak RSS of one process per row and T instead of time.")
    flags.DEFINE_list("memory_T", ["100", "400", "1600"], "Sequence lengths for --memory.")
    flags.DEFINE_integer("memory_max_T_autodiff", 400, "Longest T for the λ=1 autodiff row in --memory.")
    flags.DEFINE_string("_rss_child", "", "Internal: run one --memory measurement (row|T|xla) and print it.")
    flags.DEFINE_bool("drift", False, "Measure the float32 drift of λ=1's reversible backward pass.")
    flags.DEFINE_list("drift_T", ["50", "200", "1000"], "Sequence lengths for --drift.")
    flags.DEFINE_bool("profile", False, "TensorFlow, XLA off: time per op type of --steps traced steps per row.")
    flags.DEFINE_integer("profile_top", 12, "Op types listed per row by --profile.", lower_bound=1)
    flags.DEFINE_bool("floor", False, "Also measure the memory bandwidth and print λ=1's fused-kernel floor.")


# Reference variants of the RUM layer: the same layer whose cell runs with one function of
# `rum_tf.rotation` swapped for a slower way to compute the same values. The swap wraps the
# cell's `recurrent_step`, so it also holds where the reversible backward pass recomputes a step.


def _full_product_memory_step(offset, a, b, h, eps=rotation.EPS):
    """`memory_step` by the official O(N³) product M R(a, b); no factors (reversible=False only)."""
    eye = ops.eye(ops.shape(offset)[-1], dtype=offset.dtype)
    memory = ops.matmul(offset + eye, rotation.rotation_operator(a, b, eps))
    cos = rotation.rotation_components(a, b, eps)[2]
    return memory - eye, ops.squeeze(ops.matmul(memory, ops.expand_dims(h, -1)), -1), cos, None


def _autodiff_rotate_with_cos(a, b, h, eps=rotation.EPS):
    """`rotate_with_cos` without its hand-written gradient."""
    components = rotation.rotation_components(a, b, eps)
    return rotation.apply_rotation(components, h), components[2]


def with_rotation(layer, **functions):
    """`layer` (a `RUM`) whose cell runs with the named `rum_tf.rotation` functions replaced."""
    step = layer.cell.recurrent_step

    def recurrent_step(*args, **kwargs):
        saved = {name: getattr(rotation, name) for name in functions}
        for name, function in functions.items():
            setattr(rotation, name, function)
        try:
            return step(*args, **kwargs)
        finally:
            for name, function in saved.items():
                setattr(rotation, name, function)

    layer.cell.recurrent_step = recurrent_step
    return layer


ROWS = {
    "Keras GRU": lambda n, seq: keras.layers.GRU(n, return_sequences=seq),
    "Keras LSTM": lambda n, seq: keras.layers.LSTM(n, return_sequences=seq, unit_forget_bias=True),
    "RUM λ=0": lambda n, seq: RUM(n, return_sequences=seq),
    "RUM λ=0 (all-step projection)": lambda n, seq: RUM(n, input_projection="sequence", return_sequences=seq),
    "RUM λ=0 (per-step projection)": lambda n, seq: RUM(n, input_projection="step", return_sequences=seq),
    "RUM λ=0 (autodiff rotation)": lambda n, seq: with_rotation(
        RUM(n, return_sequences=seq), rotate_with_cos=_autodiff_rotate_with_cos
    ),
    "RUM λ=1": lambda n, seq: RUM(n, lambda_=1, eta=0.1, return_sequences=seq),
    "RUM λ=1 (autodiff memory step)": lambda n, seq: with_rotation(
        RUM(n, lambda_=1, eta=0.1, return_sequences=seq), memory_step=rotation.memory_step_autodiff
    ),
    "RUM λ=1 (autodiff)": lambda n, seq: RUM(n, lambda_=1, eta=0.1, reversible=False, return_sequences=seq),
    "RUM λ=1 (full product)": lambda n, seq: with_rotation(
        RUM(n, lambda_=1, eta=0.1, reversible=False, return_sequences=seq), memory_step=_full_product_memory_step
    ),
    # As --model=eunn / goru build them: rum_tf.Recurrent applies U as a matrix built once per sequence.
    "EUNN (capacity 2)": lambda n, seq: Recurrent(EUNNCell(n, capacity=2), return_sequences=seq),
    "GORU (capacity 2)": lambda n, seq: Recurrent(GORUCell(n, capacity=2), return_sequences=seq),
    # keras.layers.RNN of the same cells: each step applies U's K layers of gathers.
    "EUNN (capacity 2; K layers per step)": lambda n, seq: keras.layers.RNN(
        EUNNCell(n, capacity=2), return_sequences=seq
    ),
    "GORU (capacity 2; K layers per step)": lambda n, seq: keras.layers.RNN(
        GORUCell(n, capacity=2), return_sequences=seq
    ),
}


def _model(row, shape, xla):
    batch, steps, units, inputs, classes, per_step = SHAPES[shape] if isinstance(shape, str) else shape
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
    # JAX's peak_bytes_in_use is the process's running maximum and cannot be reset, so after the
    # first row it would report the largest model so far, not this one (seen on the H200: 258, then
    # 514 for every row): JAX gets "n/a".
    if keras.backend.backend() == "tensorflow":
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
    """Markdown table from {(shape, xla): {row: (ms, peak)}}; ratios against Keras GRU and RUM λ=0."""
    lines = [
        "| shape | XLA | model | ms / step | × Keras GRU | × RUM λ=0 | peak MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (shape, xla), rows in results.items():
        gru = rows.get("Keras GRU", (None,))[0]
        rum = rows.get("RUM λ=0", (None,))[0]
        for row, (ms, peak) in rows.items():
            ratios = [f"{ms / ref:.2f}" if ref else "n/a" for ref in (gru, rum)]
            mem = f"{peak:.0f}" if peak is not None else "n/a"
            lines.append(f"| {shape} | {'on' if xla else 'off'} | {row} | {ms:.1f} | {' | '.join(ratios)} | {mem} |")
    return "\n".join(lines)


def best_of(results):
    """{shape: {row: (ms, xla)}}: each row's fastest XLA setting, from `format_table`'s input."""
    best = {}
    for (shape, xla), rows in results.items():
        for row, (ms, _) in rows.items():
            if row not in best.setdefault(shape, {}) or ms < best[shape][row][0]:
                best[shape][row] = (ms, xla)
    return best


def format_best(results):
    """Markdown table of each row's best setting against the best setting of Keras GRU and RUM λ=0."""
    lines = [
        "| shape | model | best ms / step | XLA | × best Keras GRU | × best RUM λ=0 |",
        "|---|---|---:|---|---:|---:|",
    ]
    for shape, rows in best_of(results).items():
        refs = [rows.get(name, (None,))[0] for name in ("Keras GRU", "RUM λ=0")]
        for row, (ms, xla) in rows.items():
            ratios = " | ".join(f"{ms / ref:.2f}" if ref else "n/a" for ref in refs)
            lines.append(f"| {shape} | {row} | {ms:.1f} | {'on' if xla else 'off'} | {ratios} |")
    return "\n".join(lines)


# The floor of λ=1's memory part: a fused kernel would make 6 passes over the B×N² float32 memory per
# time step (forward: read D, write D'; backward: read D_t, write D_{t-1}, read G, write G'), each
# at the device's memory bandwidth (docs/BENCHMARKS.md, "What would close the gap").
FUSED_PASSES = 6


def measure_bandwidth(batch, units, repeats=200):
    """GB/s of a compiled element-wise pass (read and write) over a [batch, units, units] float32 tensor."""
    d = np.ones((batch, units, units), np.float32)
    scale = np.float32(1.0 + 1e-7)
    if keras.backend.backend() == "jax":
        import jax

        loop = jax.jit(lambda d: jax.lax.fori_loop(0, repeats, lambda i, d: d * scale, d))
        run = lambda: loop(d).block_until_ready()
    else:
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def loop(d):
            return tf.while_loop(lambda i, d: i < repeats, lambda i, d: (i + 1, d * scale), (0, d))[1]

        d = tf.constant(d)
        run = lambda: loop(d).numpy()
    run()  # compile
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2 * batch * units * units * 4 * repeats / min(times) / 1e9


def fused_floor_ms(shape, gb_per_s):
    """Milliseconds per training step that the λ=1 memory part needs at least, at `gb_per_s`."""
    batch, steps, units = SHAPES[shape][:3] if isinstance(shape, str) else shape[:3]
    return FUSED_PASSES * batch * units * units * 4 * steps / (gb_per_s * 1e9) * 1e3


# Peak memory: one fresh process per (row, T), so each peak is that model's own.
MEMORY_SHAPE = (64, 100, 10)  # batch, units, inputs; copying-like, an output per step


def _rss_child(spec):
    """Trains `row` for two steps at length T; prints {"rss_mib": peak RSS} as JSON."""
    row, steps, xla = spec.split("|")
    batch, units, inputs = MEMORY_SHAPE
    model, x, y = _model(row, (batch, int(steps), units, inputs, 9, True), xla == "on")
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure_memory(rows, lengths, xla, max_autodiff_steps):
    """{row: {T: peak RSS MiB of a process that trains it}}; None where skipped or failed."""
    results = {}
    for row in rows:
        results[row] = {}
        for steps in lengths:
            if "autodiff" in row or "full product" in row:
                if steps > max_autodiff_steps:  # T B N² floats: gigabytes
                    results[row][steps] = None
                    continue
            spec = f"{row}|{steps}|{'on' if xla else 'off'}"
            done = subprocess.run(
                [sys.executable, "-m", "tasks.benchmark", f"--_rss_child={spec}"],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            results[row][steps] = json.loads(lines[-1])["rss_mib"] if done.returncode == 0 and lines else None
            print(f"  {row} T={steps}: {results[row][steps]}", file=sys.stderr)
    return results


def format_memory_table(results, lengths):
    batch, units, _ = MEMORY_SHAPE
    head = " | ".join(f"T={t}" for t in lengths)
    lines = [
        f"| model (B={batch}, N={units}) | {head} | growth T={lengths[0]}→{lengths[1]} |",
        "|---|" + "---:|" * (len(lengths) + 1),
    ]
    for row, by_t in results.items():
        cells = [f"{by_t[t]:.0f}" if by_t[t] is not None else "–" for t in lengths]
        first, second = by_t[lengths[0]], by_t[lengths[1]]
        growth = f"{second - first:+.0f}" if first is not None and second is not None else "–"
        lines.append(f"| {row} | {' | '.join(cells)} | {growth} |")
    return "\n".join(lines)


def measure_drift(lengths, batch=4, units=100, inputs=10, seed=0):
    """The float32 error of λ=1's reversible backward pass, per T.

    For a RUM(units, lambda_=1, eta=0.1) with its default initialisation on
    normal inputs: the largest |rebuilt M_0 - I| after undoing all T steps
    with the stored factors (what the backward pass does), and the relative
    error of <gradient, v> for random directions v over all weights, against
    central differences of the float64 NumPy reference
    (tests/numpy_reference.py), for the reversible and the autodiff path in
    float32. Returns {T: dict}.
    """
    sys.path.insert(0, str(REPO / "tests"))
    import numpy_reference as ref  # the tests' float64 reference; only this measurement needs it

    results = {}
    for steps in lengths:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(batch, steps, inputs)).astype(np.float32)
        weigh = rng.normal(size=(batch, steps, units))
        layers = {}
        for reversible in (True, False):
            keras.utils.set_random_seed(seed)
            layers[reversible] = RUM(units, lambda_=1, eta=0.1, reversible=reversible, return_sequences=True)
            layers[reversible].build((None, None, inputs))
        layers[False].set_weights(layers[True].get_weights())
        cell = layers[True].cell
        # Undo the steps with the stored factors, as the backward pass does.
        h, d = cell.get_initial_state(batch)
        factors = []
        for t in range(steps):
            _, (h, d), f = cell.recurrent_step(cell.project_inputs(x[:, t]), [h, d], return_memory_factors=True)
            factors.append(f)
        d = ops.reshape(d, (batch, units, units))
        for f in reversed(factors):
            d = rotation.memory_unstep(d, f)
        rebuilt = float(np.max(np.abs(ops.convert_to_numpy(d))))
        weights = {v.name: np.asarray(ops.convert_to_numpy(v), np.float64) for v in cell.weights}

        def reference_loss(w, x=x, weigh=weigh):  # this iteration's batch
            outs = [ref.rum_sequence(x[i], w, lambda_=1, eta=0.1)[0] for i in range(batch)]
            return float(np.sum(weigh * np.stack(outs)))

        grads = {r: _weight_gradients(layers[r], x, weigh) for r in (True, False)}
        errors = {True: [], False: []}
        for _ in range(2):
            direction = {k: rng.normal(size=v.shape) for k, v in weights.items()}
            step = 1e-7
            up = reference_loss({k: weights[k] + step * direction[k] for k in weights})
            down = reference_loss({k: weights[k] - step * direction[k] for k in weights})
            numeric = (up - down) / (2 * step)
            for r in (True, False):
                analytic = sum(float(np.sum(grads[r][k] * direction[k])) for k in weights)
                errors[r].append(abs(analytic - numeric) / abs(numeric))
        results[steps] = dict(rebuilt=rebuilt, reversible=max(errors[True]), autodiff=max(errors[False]))
        print(f"  drift T={steps}: {results[steps]}", file=sys.stderr)
    return results


def _weight_gradients(layer, x, weigh):
    """{name: d sum(weigh * layer(x)) / d weight} as float64 NumPy, on TensorFlow or JAX."""
    variables = layer.trainable_variables
    if keras.backend.backend() == "jax":
        import jax

        frozen = [v.value for v in layer.non_trainable_variables]  # e.g. the seed generator's state

        def loss(values):
            return jax.numpy.sum(layer.stateless_call(values, frozen, x)[0] * weigh)

        grads = jax.jit(jax.grad(loss))([v.value for v in variables])
    else:
        import tensorflow as tf

        @tf.function
        def gradient():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x) * tf.constant(weigh, tf.float32))
            return tape.gradient(loss, variables)

        grads = gradient()
    return {v.name: np.asarray(g, np.float64) for v, g in zip(variables, grads)}


def profile_ops(shape, xla, rows, steps):
    """{row: (ms per step, {op type: (ms per step, ops per step)})} from the TensorFlow profiler.

    Each row is warmed up, then `steps` training steps are traced; the op
    events of the host plane's threads ("op name:op type") are summed by type.
    The ops of a loop body are listed themselves (the executor runs them one
    by one); what the column leaves out of the step is executor overhead.
    """
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    results = {}
    for row in rows:
        model, x, y = _model(row, shape, xla)
        model.train_on_batch(x, y)
        model.train_on_batch(x, y)
        logdir = tempfile.mkdtemp(prefix="rum_tf_profile_")
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        float(np.asarray(loss))
        wall = (time.perf_counter() - start) / steps * 1e3
        tf.profiler.experimental.stop()
        by_type = {}
        for path in glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True):
            space = xplane_pb2.XSpace()
            with open(path, "rb") as f:
                space.ParseFromString(f.read())
            for plane in space.planes:
                if not plane.name.startswith("/host:CPU"):
                    continue
                names = {k: m.name for k, m in plane.event_metadata.items()}
                for line in plane.lines:  # one line per thread; op events are "op name:op type"
                    for event in line.events:
                        name = names.get(event.metadata_id, "")
                        if ":" not in name or "::" in name or line.name.endswith(".py"):
                            continue  # executor bookkeeping and Python frames
                        op_type = name.rsplit(":", 1)[-1]
                        total, count = by_type.get(op_type, (0.0, 0))
                        by_type[op_type] = (total + event.duration_ps / 1e9 / steps, count + 1 / steps)
        shutil.rmtree(logdir, ignore_errors=True)
        results[row] = (wall, by_type)
        print(f"  profiled {shape} xla={xla} {row}", file=sys.stderr)
    return results


def format_profile(results, top):
    lines = []
    for row, (wall, by_type) in results.items():
        lines.append(f"{row}: {wall:.1f} ms / step (traced)")
        lines.append("| op type | ms / step | ops / step |")
        lines.append("|---|---:|---:|")
        for op_type, (ms, count) in sorted(by_type.items(), key=lambda kv: -kv[1][0])[:top]:
            lines.append(f"| {op_type} | {ms:.1f} | {count:.0f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS._rss_child:
        _rss_child(FLAGS._rss_child)
        return
    if FLAGS.drift:
        lengths = [int(t) for t in FLAGS.drift_T]
        results = measure_drift(lengths)
        print(f"backend: {keras.backend.backend()}")
        print("| T | max abs(rebuilt M_0 - I) | gradient rel. error, reversible f32 | same, autodiff f32 |")
        print("|---:|---:|---:|---:|")
        for t, r in results.items():
            print(f"| {t} | {r['rebuilt']:.2e} | {r['reversible']:.2e} | {r['autodiff']:.2e} |")
        return
    unknown = [s for s in FLAGS.shapes if s not in SHAPES]
    if unknown:
        raise app.UsageError(f"unknown shape(s) {unknown}; choose from {sorted(SHAPES)}")
    rows = [r.strip() for r in FLAGS.rows.split(",")] if FLAGS.rows else list(ROWS)
    if set(rows) - set(ROWS):
        raise app.UsageError(f"unknown row(s) {sorted(set(rows) - set(ROWS))}; choose from {list(ROWS)}")
    if "Keras GRU" not in rows:
        rows.insert(0, "Keras GRU")
    if FLAGS.memory:
        lengths = [int(t) for t in FLAGS.memory_T]
        xla = FLAGS.xla == "on" or keras.backend.backend() == "jax"
        results = measure_memory(rows, lengths, xla, FLAGS.memory_max_T_autodiff)
        print(f"backend: {keras.backend.backend()}, XLA {'on' if xla else 'off'}; peak RSS MiB")
        print(format_memory_table(results, lengths))
        return
    xla_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.xla]
    if keras.backend.backend() == "jax":
        xla_settings = [True]  # JAX without jit is op-by-op eager: not a fair row
    if FLAGS.profile:
        if keras.backend.backend() != "tensorflow":
            raise app.UsageError("--profile needs the TensorFlow backend")
        # XLA off only: a compiled step is one cluster, whose ops this profiler does not time on CPU.
        for shape in FLAGS.shapes:
            print(f"backend: tensorflow, shape {shape}, XLA off")
            print(format_profile(profile_ops(shape, False, rows, FLAGS.steps), FLAGS.profile_top))
        return
    results = {}
    for shape in FLAGS.shapes:
        for xla in xla_settings:
            results[(shape, xla)] = time_shape(shape, xla, rows, FLAGS.steps, FLAGS.rounds)
    print(f"backend: {keras.backend.backend()}; each row's best setting against the best of the reference:")
    print(format_best(results))
    print("\nEvery setting:")
    print(format_table(results))
    if FLAGS.floor:
        for shape in FLAGS.shapes:
            batch, _, units = SHAPES[shape][:3]
            rate = measure_bandwidth(batch, units)
            floor = fused_floor_ms(shape, rate)
            print(f"{shape}: element-wise pass {rate:.1f} GB/s; λ=1 memory floor {floor:.1f} ms / step")


if __name__ == "__main__":
    define_flags()
    app.run(main)
