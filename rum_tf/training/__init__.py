"""The shared training harness of the task binaries (tasks/*.py).

models       --model registry (name -> recurrent layer, the options it takes), OneHot, output_layer
optimizers   TF1-faithful RMSProp and Adam
inputs       step-indexed input pipelines (exact resume): tf.data, or NumPy PyDatasets off TensorFlow
loop         Task, RunConfig, run(): fit, resume, test, results
callbacks    RunState, StopRule and the Bookkeeper callback (clocks, guard, log, curve, checkpoints, progress)
run_folder   RunFolder: the lock, atomic writes, checkpoints, progress.json and results.json of one run
checkpoints  atomic step checkpoints (weights, optimizer, RNG state)
distribute   --strategy and --jit_compile
results      results.json, progress.json, the curve CSV and plots
environment  where a run trains (devices, machine, versions, the commit), for results.json
options      the binaries' options declared once (fields, defaults, checks) and the shared sections
flags        the task configs: frozen dataclasses declared once, read from absl flags
             (import it explicitly; it defines no global flag)
fast_slow    the fast-slow layers of the registry's fs_rum, fs_lstm, fs_goru
"""

from rum_tf.training import checkpoints, distribute, inputs, models, optimizers, results
from rum_tf.training.inputs import cyclic_batches, fixed_batches, generated_batches
from rum_tf.training.loop import RunConfig, RunError, Task, run
from rum_tf.training.models import OneHot, output_layer, recurrent_layer, register
from rum_tf.training.optimizers import TF1RMSprop, make_optimizer

__all__ = [
    "OneHot",
    "RunConfig",
    "RunError",
    "TF1RMSprop",
    "Task",
    "checkpoints",
    "cyclic_batches",
    "distribute",
    "fixed_batches",
    "generated_batches",
    "inputs",
    "make_optimizer",
    "models",
    "optimizers",
    "output_layer",
    "recurrent_layer",
    "register",
    "results",
    "run",
]
