"""Copying memory (SPEC §4): remember 10 symbols across a delay of T steps.

    python -m tasks.copying --flagfile=flags/copying/rum_lambda0_T200.cfg --output_dir=runs/copying_rum

Inputs one-hot(10) -> recurrent layer -> Dense(9) softmax at every step; the loss and
accuracy average over all T+20 positions. Fresh batches every step (batch k is drawn
from the seed and k). A model without memory reaches cross-entropy 10 ln 8 / (T+20),
the memoryless baseline (accuracy (T + 10 + 10/8) / (T+20)), logged beside the loss and
drawn on the plot. The final test uses --test_size held-out sequences. Defaults are the official script's.
"""

import keras

from rum_tf import layers
from rum_tf.config import flags, models
from rum_tf.data import copying as data
from rum_tf.data import streams
from rum_tf.training import loop

APP = flags.TaskConfig(
    "copying",
    flags.SYNTHETIC,
    defaults=dict(
        T=200,
        units=100,
        batch_size=128,
        optimizer="rmsprop",
        learning_rate=1e-3,
        rmsprop_decay=0.9,
        steps=20_000,
        eval_every=100,
        test_size=10_000,
    ),
)


def build_model(T, recurrent_layer):
    """one-hot(10) -> recurrent layer (all outputs) -> Dense(9) logits at every step."""
    tokens = keras.Input((T + 2 * data.NUM_SYMBOLS,), dtype="int32", name="tokens")
    x = layers.OneHot(data.INPUT_DEPTH, name="one_hot")(tokens)
    x = recurrent_layer(return_sequences=True, name="rnn")(x)
    logits = layers.output_layer(data.NUM_CLASSES, data.INPUT_DEPTH)(x)
    return keras.Model(tokens, logits, name="copying")


def make_task(T, batch_size, eval_batch_size, test_size, seed, recurrent_layer, title="copying"):
    """The copying `loop.Task`; `recurrent_layer(**layer_kwargs)` builds the RNN."""
    baseline = data.memoryless_baseline(T)
    # The same model's accuracy: every blank right, 1 in 8 of the symbols.
    baseline_accuracy = (T + data.NUM_SYMBOLS + data.NUM_SYMBOLS / 8) / (T + 2 * data.NUM_SYMBOLS)
    return loop.Task(
        name="copying",
        build_model=lambda: build_model(T, recurrent_layer),
        train_data=lambda step: data.copying_dataset(batch_size, T, seed, start_step=step),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        test_data=lambda: streams.fixed_batches(data.copying_test_set(test_size, T, seed), eval_batch_size),
        references={"loss": {"memoryless baseline": baseline}, "accuracy": {"memoryless": baseline_accuracy}},
        task_results={"T": T, "memoryless_baseline": baseline, "memoryless_accuracy": baseline_accuracy},
        title=title,
    )


def main(config):
    task = make_task(
        config.T,
        config.batch_size,
        config.evaluation_batch_size,
        config.test_size,
        config.seed,
        models.builder(config),
        title=f"copying T={config.T}: {config.model_label()}",
    )
    return loop.run(*config.from_official(task, config.run_config()))


if __name__ == "__main__":
    APP.run(main)
