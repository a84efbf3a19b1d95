"""Associative recall (SPEC §4): read T/2 key-value pairs, then give the value of a key.

    python -m tasks.recall --flagfile=flags/recall/rum_lambda1_eta0.1_T30.cfg --output_dir=runs/recall_rum

Inputs one-hot(T/2+11) -> recurrent layer -> its last output -> Dense(10) logits.
Fixed train / valid / test sets (--train_size, --valid_size, --test_size); training
cycles through the train set in order, `batch_size` sequences per step, as the
official script; validation after every --eval_every steps, test at the end.
Defaults are the official script's.
"""

import dataclasses

import keras

from rum_tf import layers
from rum_tf.config import flags, models
from rum_tf.data import recall as data
from rum_tf.data import streams
from rum_tf.training import loop


@dataclasses.dataclass(frozen=True)
class Recall:
    train_size: int = flags.integer(100_000, "Training sequences (a fixed set).", minimum=1)
    valid_size: int = flags.integer(10_000, "Validation sequences, evaluated every --eval_every steps.", minimum=1)


def _even_T(config):
    if config.T < 2 or config.T % 2:
        raise ValueError(f"--T must be an even number >= 2 for associative recall, got {config.T}")


APP = flags.TaskConfig(
    "recall",
    flags.SYNTHETIC + (Recall,),
    defaults=dict(
        T=30,
        units=50,
        batch_size=128,
        optimizer="adam",
        learning_rate=1e-3,
        steps=100_000,
        eval_every=1_000,
        test_size=20_000,
    ),
    checks=(_even_T,),
)


def build_model(T, recurrent_layer):
    """one-hot(T/2+11) -> recurrent layer (last output) -> Dense(10) logits."""
    depth = data.vocab_size(T)
    tokens = keras.Input((T + 3,), dtype="int32", name="tokens")
    x = layers.OneHot(depth, name="one_hot")(tokens)
    x = recurrent_layer(return_sequences=False, name="rnn")(x)
    logits = layers.output_layer(data.NUM_VALUES, depth)(x)
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
        train_data=lambda step: streams.cyclic_batches(split("train"), batch_size, step),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        valid_data=lambda: streams.fixed_batches(split("valid"), eval_batch_size),
        test_data=lambda: streams.fixed_batches(split("test"), eval_batch_size),
        references={"accuracy": {"chance": 1 / data.NUM_VALUES}},
        task_results={"T": T, "train_size": sizes[0], "valid_size": sizes[1], "test_size": sizes[2]},
        title=title,
    )


def main(config):
    sizes = (config.train_size, config.valid_size, config.test_size)
    task = make_task(
        config.T,
        config.batch_size,
        config.evaluation_batch_size,
        sizes,
        config.seed,
        models.builder(config),
        title=f"associative recall T={config.T}: {config.model_label()}",
    )
    return loop.run(*config.from_official(task, config.run_config()))


if __name__ == "__main__":
    APP.run(main)
