"""Associative recall (SPEC §4): read T/2 key-value pairs, then give the value of a key.

    python -m tasks.recall --flagfile=flags/recall/rum_lambda1_eta0.1_T30.cfg --output_dir=runs/recall_rum

Inputs one-hot(T/2+11) -> recurrent layer -> its last output -> Dense(10) logits.
Fixed train / valid / test sets (--train_size, --valid_size, --test_size); training
cycles through the train set in order, `batch_size` sequences per step, as the
official script; validation after every --eval_every steps, test at the end.
Defaults are the official script's.
"""

import keras
from absl import flags

from rum_tf.data import recall as data
from rum_tf.training import flags as training_flags
from rum_tf.training import inputs, loop, models

FLAGS = flags.FLAGS

TRAIN_SIZE = flags.DEFINE_integer("train_size", 100_000, "Training sequences (a fixed set).")
VALID_SIZE = flags.DEFINE_integer("valid_size", 10_000, "Validation sequences, evaluated every --eval_every steps.")
flags.register_validator("train_size", lambda v: v is not None and v >= 1, "--train_size must be >= 1")
flags.register_validator("valid_size", lambda v: v is not None and v >= 1, "--valid_size must be >= 1")


def _check_T():
    if FLAGS.T < 2 or FLAGS.T % 2:
        raise ValueError(f"--T must be an even number >= 2 for associative recall, got {FLAGS.T}")


APP = training_flags.TaskFlags(
    "recall",
    groups=training_flags.SYNTHETIC_GROUPS + ("official",),
    defaults=dict(T=30, units=50, batch_size=128, optimizer="adam", learning_rate=1e-3, steps=100_000,
                  eval_every=1_000, test_size=20_000),
    own=(TRAIN_SIZE, VALID_SIZE),
    checks=(_check_T,),
)


def build_model(T, recurrent_layer):
    """one-hot(T/2+11) -> recurrent layer (last output) -> Dense(10) logits."""
    depth = data.vocab_size(T)
    tokens = keras.Input((T + 3,), dtype="int32", name="tokens")
    x = models.OneHot(depth, name="one_hot")(tokens)
    x = recurrent_layer(return_sequences=False, name="rnn")(x)
    logits = models.output_layer(data.NUM_VALUES, depth)(x)
    return keras.Model(tokens, logits, name="recall")


def make_task(T, batch_size, eval_batch_size, sizes, seed, recurrent_layer, title="recall"):
    """The recall `loop.Task`; `sizes` = (train, valid, test); the sets are made lazily."""
    cache = {}

    def split(name):
        if not cache:
            cache["data"] = data.recall_data(T, *sizes, seed=seed)
        return getattr(cache["data"], name)

    return loop.Task(
        name="recall",
        build_model=lambda: build_model(T, recurrent_layer),
        train_data=lambda step: inputs.cyclic_batches(split("train"), batch_size, step),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        valid_data=lambda: inputs.fixed_batches(split("valid"), eval_batch_size),
        test_data=lambda: inputs.fixed_batches(split("test"), eval_batch_size),
        references={"accuracy": {"chance": 1 / data.NUM_VALUES}},
        task_results={"T": T, "train_size": sizes[0], "valid_size": sizes[1], "test_size": sizes[2]},
        title=title,
    )


def main(argv):
    del argv
    sizes = (FLAGS.train_size, FLAGS.valid_size, FLAGS.test_size)
    task = make_task(FLAGS.T, FLAGS.batch_size, APP.eval_batch_size, sizes, FLAGS.seed, APP.recurrent_layer,
                     title=f"associative recall T={FLAGS.T}: {APP.model_label()}")
    return loop.run(*APP.from_official(task, APP.run_config()))


if __name__ == "__main__":
    APP.run(main)
