"""The prepared GPU check: one command, at most 8 minutes, every part in its own process.

    python -m tasks.device_check --out DIR            # on the GPU machine (docs/DEVICE.md)
    python -m tasks.device_check --smoke --out DIR    # the same parts on CPU at tiny sizes (CI)

Parts, each a subprocess with its own time limit, so a part that fails or hangs (an XLA compile
cannot be interrupted in-process) is reported and the rest still run:

  environment   the devices TensorFlow and JAX see, nvidia-smi, the versions
  <b>_xla         RUM λ=0 and λ=1 train a few XLA-compiled steps; their compiled weight gradients
                against central differences of the float64 NumPy reference (tests/numpy_reference.py,
                run by NumPy on the CPU, independent of the device computation)
  <b>_speed       tasks.benchmark rows at the copying and recall shapes against Keras GRU and LSTM
                (cuDNN under TensorFlow), best against best; PyTorch's cuDNN GRU and LSTM where
                PyTorch sees a GPU; the memory bandwidth and λ=1's fused-kernel floor
  <b>_run         tasks.copying with the copying T=200 RUM λ=0 row's flagfile for a fixed number of
                steps, and its steps per second

with <b> jax (the TF-free path: keras, jax, no TensorFlow) and tensorflow. A backend that is not
installed is reported as "skipped: no <backend>", which counts as ran. Writes DIR/device.json
and DIR/DEVICE.md after every part, the parts' logs to DIR/logs/ and the runs to DIR/run_<b>/.
Exits 0 when every part ran (ok or skipped), 1 otherwise.
"""

import argparse
import contextlib
import csv
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "tensorflow")  # jax first: the lent GPU machine has no TensorFlow
# Nominal seconds per part (full, smoke); the budget shrinks them where earlier parts ran long. The
# smoke limits only end a hung part: on one loaded core (2026-12-05) a smoke speed part took over 60 s.
LIMITS = {"environment": (60, 60), "xla": (120, 120), "speed": (150, 120), "run": (100, 100)}
BUDGET_S = {False: 480, True: 480}
GRADIENT_TOLERANCE = 1e-3  # relative error of a directional derivative in float32 (CPU: ~1e-6)
VERSIONS = ("jax", "jaxlib", "keras", "tensorflow", "torch", "numpy", "absl-py", "optree", "h5py", "ml_dtypes")
RUN_FLAGFILE = "flags/copying/rum_lambda0_T200.cfg"


def parts():
    """[(name, backend or None, kind)] in running order."""
    return [("environment", None, "environment")] + [
        (f"{b}_{kind}", b, kind) for b in BACKENDS for kind in ("xla", "speed", "run")
    ]


# ------------------------------------------------------------------------------------------ parent


def run_parts(out, smoke, only=None, budget_s=None):
    """Runs the parts one by one; returns the report dict (also written to out/device.json)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    todo = [p for p in parts() if only is None or p[0] in only]
    budget = BUDGET_S[smoke] if budget_s is None else budget_s
    start = time.monotonic()
    report = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke (CPU, tiny sizes)" if smoke else "full",
        "budget_s": budget,
        "parts": {},
    }
    installed = {b for b in BACKENDS if importlib.util.find_spec(b) is not None}
    for i, (name, backend, kind) in enumerate(todo):
        # Skipped parts take no time: only the parts that will run share the budget.
        nominal = [LIMITS[k][smoke] for _, b, k in todo[i:] if b is None or b in installed]
        remaining = budget - (time.monotonic() - start)
        # At most the nominal limit; at least this part's proportional share of what is left, more
        # where half of the later parts' nominal limits stays in reserve. Never more than is left.
        share = remaining * nominal[0] / sum(nominal) if nominal else remaining
        limit = max(1.0, min(LIMITS[kind][smoke], max(share, remaining - sum(nominal[1:]) / 2)))
        if backend is not None and backend not in installed:
            entry = {"status": f"skipped: no {backend}", "seconds": 0.0, "limit_s": round(limit)}
        else:
            entry = _run_part(out, name, backend, kind, smoke, limit)
        entry["backend"] = backend
        report["parts"][name] = entry
        report["wall_s"] = round(time.monotonic() - start, 1)
        _write_reports(out, report)
        print(f"device_check: {name}: {entry['status']} ({entry['seconds']:.0f} s of {limit:.0f} s)", flush=True)
    return report


def _run_part(out, name, backend, kind, smoke, limit):
    result_file = out / "logs" / f"{name}.json"
    result_file.unlink(missing_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if backend:
        env["KERAS_BACKEND"] = backend
    if smoke:  # CPU only, also on a machine with a GPU
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    cmd = _part_command(kind, out, result_file, limit, smoke)
    start = time.monotonic()
    with open(out / "logs" / f"{name}.log", "w") as log:
        # A session of its own, so a timeout also ends the processes the part started.
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    entry = {"seconds": round(time.monotonic() - start, 1), "limit_s": round(limit)}
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    if result is not None:
        entry["result"] = result
    if code is None:
        entry["status"] = "timeout"
    elif code != 0 or result is None:
        entry["status"] = "failed"
        entry["error"] = _tail(out / "logs" / f"{name}.log")
    else:
        entry["status"] = result.pop("status", "ok")
    return entry


def _part_command(kind, out, result_file, limit, smoke):
    """The command of a part's process: this module, which writes its result to `result_file`."""
    cmd = [sys.executable, "-m", "tasks.device_check", f"--_part={kind}", f"--out={out}"]
    return cmd + [f"--_result={result_file}", f"--_limit={limit:.0f}"] + (["--smoke"] if smoke else [])


def _tail(path, lines=15):
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def _write_reports(out, report):
    (out / "device.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "DEVICE.md").write_text(format_report(report))


def ran(report):
    """Whether every part ran: ok or skipped."""
    return all(p["status"] == "ok" or p["status"].startswith("skipped") for p in report["parts"].values())


# ------------------------------------------------------------------------------------------ report


def format_report(report):
    """DEVICE.md: which path ran, the parts, then each part's table."""
    parts_ = report["parts"]
    paths = [b for b in BACKENDS if any(p["backend"] == b and p["status"] == "ok" for p in parts_.values())]
    env = parts_.get("environment", {}).get("result", {})
    lines = [
        "# Device check",
        "",
        f"Started {report['started']}, {report['mode']}, {report.get('wall_s', 0):.0f} s of a "
        f"{report['budget_s']} s budget. Path that ran: "
        + (" and ".join({"jax": "JAX (TF-free)", "tensorflow": "TensorFlow"}[b] for b in paths) or "none")
        + ".",
        "",
        "| part | status | seconds | limit |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {n} | {p['status']} | {p['seconds']:.0f} | {p['limit_s']} |" for n, p in parts_.items()]
    if env:
        lines += ["", "## Environment", ""]
        lines += [f"- {k}: {v}" for k, v in env.items() if k != "versions"]
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v))
    for b in BACKENDS:
        xla = parts_.get(f"{b}_xla", {}).get("result")
        if xla:
            lines += ["", f"## XLA, {b} ({xla.get('device')})", ""]
            lines += [
                "| model | steps | first → last loss | gradient rel. error, float32 matmuls | default precision |",
                "|---|---:|---|---:|---:|",
            ]
            for row, r in xla.get("rows", {}).items():
                losses = r.get("losses") or [math.nan]
                default = r.get("gradient_error_default_precision")
                lines.append(
                    f"| {row} | {len(r.get('losses') or [])} | {losses[0]:.4g} → {losses[-1]:.4g} | "
                    f"{r.get('gradient_error', math.nan):.2e} | {'–' if default is None else f'{default:.2e}'} |"
                )
            lines.append(f"\nGradients pass below {GRADIENT_TOLERANCE:g} relative error; {xla.get('reference')}.")
        speed = parts_.get(f"{b}_speed", {}).get("result")
        if speed:
            lines += ["", f"## Speed, {b} ({speed.get('device')})", ""]
            lines += [speed.get("best", ""), "", "Every setting:", "", speed.get("table", "")]
            lines += [f"\n{note}" for note in speed.get("notes", [])]
        run = parts_.get(f"{b}_run", {}).get("result")
        if run:
            lines += ["", f"## Short run, {b}", ""]
            lines += [f"- {k}: {v}" for k, v in run.items()]
    failed = {n: p["error"] for n, p in parts_.items() if p.get("error")}
    for name, error in failed.items():
        lines += ["", f"## {name}: last lines of its log", "", "```", error, "```"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ parts


def part_environment(smoke, out, limit):
    info = {
        "python": platform.python_version(),
        "machine": platform.platform(),
        "tensorflow_free_path": importlib.util.find_spec("tensorflow") is None,
        "versions": {name: _version(name) for name in VERSIONS},
    }
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
        info["nvidia-smi"] = done.stdout.strip() or done.stderr.strip()
    if importlib.util.find_spec("jax"):
        import jax

        info["jax devices"] = ", ".join(str(d) for d in jax.devices())
    if importlib.util.find_spec("tensorflow"):
        import tensorflow as tf

        info["tensorflow devices"] = ", ".join(d.name for d in tf.config.list_physical_devices())
        build = tf.sysconfig.get_build_info()
        info["tensorflow cuda/cudnn"] = f"{build.get('cuda_version')}/{build.get('cudnn_version')}"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    info["code"] = commit.stdout.strip() or "no git"
    return info


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device():
    """Where Keras' backend computes: "gpu" or "cpu" (with the device name)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return f"{jax.default_backend()}: {jax.devices()[0].device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"gpu: {gpus[0].name}" if gpus else "cpu"


def part_xla(smoke, out, limit):
    """λ=0 and λ=1: a few compiled training steps, and the compiled gradient against the reference."""
    import numpy as np

    from tasks import benchmark

    shape = (4, 6, 8, 5, 3, True) if smoke else (64, 50, 100, 10, 9, True)
    gpu = not _device().startswith("cpu")
    rows = {}
    for row in ("RUM λ=0", "RUM λ=1"):
        model, x, y = benchmark._model(row, shape, True)
        losses = [float(np.asarray(model.train_on_batch(x, y))) for _ in range(2 if smoke else 10)]
        r = {"losses": losses, "gradient_error": _gradient_error(row, precise=True)}
        if gpu:  # TF32 matmuls, where the GPU has them
            r["gradient_error_default_precision"] = _gradient_error(row, precise=False)
        rows[row] = r
    ok = all(np.isfinite(r["losses"]).all() and r["gradient_error"] < GRADIENT_TOLERANCE for r in rows.values())
    return {
        "status": "ok" if ok else "failed: non-finite loss or gradient error",
        "device": _device(),
        "training shape": f"B, T, N, inputs = {shape[:4]}",
        "reference": "reference: central differences (step 1e-6) of tests/numpy_reference.py in float64 NumPy "
        "on the CPU, along 3 random directions over all weights; B=3, T=6, N=8, 4 inputs",
        "rows": rows,
    }


def _gradient_error(row, precise, batch=3, steps=6, units=8, inputs=4, seed=0):
    """Largest relative error of <compiled gradient, v> against the float64 reference, over 3 directions v."""
    import keras
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    import numpy_reference as ref
    from rum_tf import RUM

    lambda_, eta = (1, 0.1) if "λ=1" in row else (0, None)
    keras.utils.set_random_seed(seed)
    layer = RUM(units, lambda_=lambda_, eta=eta, return_sequences=True)
    layer.build((None, None, inputs))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, inputs)).astype(np.float32)
    weigh = rng.normal(size=(batch, steps, units))
    grads = _compiled_gradients(layer, x, weigh, precise)
    weights = {v.name: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in layer.cell.weights}

    def loss(w):
        return sum(
            float(np.sum(weigh[i] * ref.rum_sequence(x[i], w, lambda_=lambda_, eta=eta)[0])) for i in range(batch)
        )

    errors = []
    for _ in range(3):
        v = {k: rng.normal(size=w.shape) for k, w in weights.items()}
        step = 1e-6
        numeric = (
            loss({k: weights[k] + step * v[k] for k in weights}) - loss({k: weights[k] - step * v[k] for k in weights})
        ) / (2 * step)
        analytic = sum(float(np.sum(grads[k] * v[k])) for k in weights)
        errors.append(abs(analytic - numeric) / abs(numeric))
    return max(errors)


def _compiled_gradients(layer, x, weigh, precise):
    """{name: d sum(weigh * layer(x)) / d weight}, compiled with XLA on the default device."""
    import keras
    import numpy as np

    variables = layer.trainable_variables
    if keras.backend.backend() == "jax":
        import jax

        frozen = [v.value for v in layer.non_trainable_variables]

        def loss(values):
            return jax.numpy.sum(layer.stateless_call(values, frozen, x)[0] * weigh)

        with jax.default_matmul_precision("float32" if precise else "default"):
            grads = jax.jit(jax.grad(loss))([v.value for v in variables])
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(not precise)

        @tf.function(jit_compile=True)
        def gradient():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x) * tf.constant(weigh, tf.float32))
            return tape.gradient(loss, variables)

        grads = gradient()
        tf.config.experimental.enable_tensor_float_32_execution(True)
    return {v.name: np.asarray(g, np.float64) for v, g in zip(variables, grads)}


SPEED_ROWS = ["Keras GRU", "Keras LSTM", "RUM λ=0", "RUM λ=0 (per-step projection)", "RUM λ=1"]


def part_speed(smoke, out, limit, result_file=None):
    """tasks.benchmark rows per shape, best against best; a shape is skipped when time runs short."""
    import keras

    from tasks import benchmark

    if smoke:
        shapes = {"copying": (4, 8, 8, 10, 9, True)}
    else:
        shapes = {name: benchmark.SHAPES[name] for name in ("copying", "recall50", "recall100")}
    settings = [True] if keras.backend.backend() == "jax" else [False, True]  # TF: cuDNN runs without XLA
    steps, rounds = (1, 1) if smoke else (5, 3)
    rows = ["Keras GRU", "RUM λ=0", "RUM λ=1"] if smoke else SPEED_ROWS
    start, results, notes, last = time.monotonic(), {}, [], 0.0
    report = {"device": _device(), "status": "ok", "notes": notes}
    for shape_name, shape in shapes.items():
        for xla in settings:
            if time.monotonic() - start + last > 0.85 * limit:
                notes.append(f"not timed, out of time: {shape_name} XLA {'on' if xla else 'off'}")
                continue
            group = time.monotonic()
            results[(shape_name, xla)] = benchmark.time_shape(shape, xla, rows, steps, rounds, log=lambda *_: None)
            last = time.monotonic() - group
            report.update(best=benchmark.format_best(results), table=benchmark.format_table(results))
            if result_file:  # what is done survives a timeout
                pathlib.Path(result_file).write_text(json.dumps(report, ensure_ascii=False))
    report["torch"] = _torch_rows(shapes, steps, rounds, notes)
    batch, units = shapes["copying"][0], shapes["copying"][2]
    rate = benchmark.measure_bandwidth(batch, units, repeats=10 if smoke else 200)
    floor = benchmark.fused_floor_ms(shapes["copying"], rate)
    notes.append(
        f"Memory bandwidth (compiled element-wise pass over the copying shape's B×N² memory): {rate:.1f} GB/s; "
        f"λ=1's fused-kernel floor ({benchmark.FUSED_PASSES} passes per time step): {floor:.2f} ms per training step."
    )
    return report


def _torch_rows(shapes, steps, rounds, notes):
    """PyTorch's cuDNN GRU and LSTM at the same shapes, where PyTorch sees a GPU: {shape: {row: ms}}."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    rows = {}
    for name, (batch, steps_t, units, inputs, classes, per_step) in shapes.items():
        rows[name] = {}
        for kind in ("GRU", "LSTM"):
            rnn = getattr(torch.nn, kind)(inputs, units, batch_first=True).cuda()
            head = torch.nn.Linear(units, classes).cuda()
            params = list(rnn.parameters()) + list(head.parameters())
            opt = torch.optim.RMSprop(params, lr=1e-3)
            x = torch.randn(batch, steps_t, inputs, device="cuda")
            y = torch.randint(0, classes, (batch, steps_t) if per_step else (batch,), device="cuda")

            def train_step(rnn=rnn, head=head, opt=opt, x=x, y=y, per_step=per_step):
                out = rnn(x)[0]
                logits = head(out if per_step else out[:, -1])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()

            for _ in range(2):
                train_step()
            times = []
            for _ in range(rounds):
                torch.cuda.synchronize()
                begin = time.perf_counter()
                for _ in range(steps):
                    train_step()
                torch.cuda.synchronize()
                times.append((time.perf_counter() - begin) / steps * 1e3)
            rows[name][f"PyTorch cuDNN {kind}"] = sorted(times)[len(times) // 2]
    notes.append(
        "PyTorch cuDNN, same shapes, timed after the Keras rows in the same process (ms / step): "
        + "; ".join(f"{s}: " + ", ".join(f"{r} {ms:.2f}" for r, ms in v.items()) for s, v in rows.items())
    )
    return rows


def part_run(smoke, out, limit):
    """The copying T=200 RUM λ=0 row's flagfile for a fixed number of steps; its steps per second."""
    folder = out / f"run_{os.environ['KERAS_BACKEND']}"
    shutil.rmtree(folder, ignore_errors=True)
    every = 2 if smoke else 100
    cmd = [sys.executable, "-m", "tasks.copying", f"--flagfile={RUN_FLAGFILE}"]
    cmd += [f"--steps={2 * every}", f"--eval_every={every}", f"--output_dir={folder}"]
    cmd += ["--T=5", "--units=8", "--batch_size=8", "--test_size=16"] if smoke else ["--test_size=1000"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"tasks.copying exited {done.returncode}")
    results = json.loads((folder / "results.json").read_text())
    report = {
        "command": " ".join(["python"] + cmd[1:]),
        "status": results.get("status"),
        "backend": results.get("backend"),
        "jit_compile": results.get("jit_compile"),
        "devices": results.get("devices"),
        "steps": results.get("steps"),
        "steps_per_s (all steps, compile included)": results.get("steps_per_s"),
        "test loss": (results.get("metrics") or {}).get("test", {}).get("loss"),
    }
    with contextlib.suppress(OSError, KeyError, ValueError, IndexError):
        with open(folder / "curve.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        window = float(rows[-1]["train_time_s"]) - float(rows[-2]["train_time_s"])
        report["steps_per_s (second interval, compiled)"] = round(every / window, 3)
    report["status"] = "ok" if results.get("status") == "finished" else f"failed: run {results.get('status')}"
    return report


PARTS = {"environment": part_environment, "xla": part_xla, "speed": part_speed, "run": part_run}


# ------------------------------------------------------------------------------------------ command


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"device_check: {message}\n")


def main(argv=None):
    parser = _Parser(prog="python -m tasks.device_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="Folder for device.json, DEVICE.md, logs/ and run_*/.")
    parser.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes (under 3 minutes).")
    parser.add_argument("--parts", default="", help="Comma-separated subset of the parts (default all).")
    parser.add_argument("--budget_s", type=float, default=None, help="Seconds for all parts (default 480).")
    for hidden in ("--_part", "--_result", "--_limit"):
        parser.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out).resolve()
    if args._part:  # a part's own process
        result = PARTS[args._part](args.smoke, out, float(args._limit), **_extra(args))
        pathlib.Path(args._result).write_text(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    names = [p[0] for p in parts()]
    only = [s.strip() for s in args.parts.split(",") if s.strip()] or None
    if only and set(only) - set(names):
        parser.error(f"unknown part(s) {sorted(set(only) - set(names))}; choose from {names}")
    if args.budget_s is not None and args.budget_s <= 0:
        parser.error("--budget_s must be > 0")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out={args.out} is not a writable folder ({e.strerror or e})")
    report = run_parts(out, args.smoke, only, args.budget_s)
    print(f"device_check: wrote {out / 'device.json'} and {out / 'DEVICE.md'} in {report['wall_s']:.0f} s")
    return 0 if ran(report) else 1


def _extra(args):
    return {"result_file": args._result} if args._part == "speed" else {}


if __name__ == "__main__":
    sys.exit(main())
