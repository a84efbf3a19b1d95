"""The shared training harness of the task binaries (tasks/*.py).

loop         Task, RunConfig, run(): fit, resume, test, results
callbacks    RunState, StopRule and the Bookkeeper callback (clocks, guard, log, curve, checkpoints, progress)
run_folder   RunFolder: the lock, atomic writes, checkpoints, progress.json and results.json of one run
checkpoints  atomic step checkpoints (weights, optimizer, RNG state)
results      results.json, progress.json, the curve CSV and plots
multitask    several runs under one folder, and their summary (bAbI)
optimizers   TF1-faithful RMSProp and Adam
distribute   --strategy and --jit_compile
environment  where a run trains (devices, machine, versions, the commit), for results.json
"""

from rum_tf.training import checkpoints, distribute, optimizers, results
from rum_tf.training.loop import RunConfig, RunError, Task, run
from rum_tf.training.optimizers import TF1RMSprop, make_optimizer

__all__ = [
    "RunConfig",
    "RunError",
    "TF1RMSprop",
    "Task",
    "checkpoints",
    "distribute",
    "make_optimizer",
    "optimizers",
    "results",
    "run",
]
