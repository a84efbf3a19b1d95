"""bAbI question answering v1.2 (SPEC §4): one model per task, story then question.

    python -m tasks.babi --flagfile=flags/babi/rum_en10k.cfg --output_dir=runs/babi_rum_en10k
    python -m tasks.babi --task=1 --babi_set=en --steps=1000 --output_dir=runs/babi_qa1

The story's tokens (left-padded to the task's longest story), then the question's (right-
padded), go through one Embedding(vocabulary, --embed_size) and one recurrent layer; the
answer's logits over the vocabulary come from the last state. The defaults are the official
script's: Adam 1e-3, batch 32, 4,000 iterations, the last 10 % of the train file held out
for validation every 200 steps, the test on the final weights, training batches in the
official order (`data.official_batch_rows`, no shuffling). The embedding starts as the
official normal(mean -sqrt(6/V), std sqrt(6/V)) (a likely slip for uniform(±sqrt(6/V)),
SPEC §6; --embedding_init=uniform gives the latter); the output layer uniform(±sqrt(6/(units
+ embed_size))), bias 0.01.

--task is 1..20, a list (1,6,15) or all. Several tasks train one after another in
--output_dir/qa<N>/, each the very run `--task=N --output_dir=.../qa<N>` makes; --output_dir
gets the per-task table and the mean test accuracy (results.json, runs.csv, runs.png).
"""

import dataclasses
import math
import os

import keras

from rum_tf.config import flags, models
from rum_tf.data import babi as data
from rum_tf.data import files, streams
from rum_tf.training import loop, multitask
from tasks import text_flags


@dataclasses.dataclass(frozen=True)
class Babi:
    task: str = flags.string(
        "all",
        "bAbI task: 1..20, a comma-separated list (1,6,15), or all; each task trains its own model.",
        convert=data.canonical_tasks,
    )
    babi_set: str = flags.enum(
        "en-10k", files.BABI_SETS, "en (1,000 training questions per task) or en-10k (10,000; the official script's)."
    )
    embedding_init: str = flags.enum(
        "official",
        ("official", "uniform"),
        "official: normal with mean -sqrt(6/V) and "
        "std sqrt(6/V), as the official script (SPEC §6: a likely slip); uniform: "
        "uniform in ±sqrt(6/V).",
    )


APP = flags.TaskConfig(
    "babi",
    (flags.Model, flags.Optimizer, flags.Run, Babi, text_flags.Text),
    defaults=dict(
        model="rum",
        units=256,
        batch_size=32,
        optimizer="adam",
        learning_rate=1e-3,
        steps=4_000,
        eval_every=200,
        embed_size=64,
    ),
)


def build_model(vocab_size, length, recurrent_layer, *, units, embed_size=64, embedding_init="official"):
    """tokens [length] -> Embedding(V, embed_size) -> recurrent layer (last state) -> Dense(V) logits."""
    scale = math.sqrt(6.0 / vocab_size)
    # Only the chosen one is made: an unseeded initializer draws its seed when constructed.
    if embedding_init == "official":
        initializer = keras.initializers.RandomNormal(mean=-scale, stddev=scale)
    else:
        initializer = keras.initializers.RandomUniform(-scale, scale)
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_size, embeddings_initializer=initializer, name="embedding")(tokens)
    x = recurrent_layer(return_sequences=False, name="rnn")(x)
    limit = math.sqrt(6.0 / (units + embed_size))
    logits = keras.layers.Dense(
        vocab_size,
        kernel_initializer=keras.initializers.RandomUniform(-limit, limit),
        bias_initializer=keras.initializers.Constant(0.01),
        name="output",
    )(x)
    return keras.Model(tokens, logits, name="babi")


def make_task(number, babi_task, config, title="bAbI"):
    """The `loop.Task` of bAbI task `number` from its `data.BabiTask`."""
    train, valid = data.split_validation(babi_task.train, 0.1)
    n_train, length, test = len(train.answer), train.inputs.shape[1], babi_task.test
    chance, majority = data.baselines(train.answer, test.answer)

    def batch(step):
        rows = data.official_batch_rows(step, n_train, config.batch_size)
        return train.inputs[rows], train.answer[rows]

    eval_batch = config.evaluation_batch_size
    return loop.Task(
        name="babi",
        build_model=lambda: build_model(
            len(babi_task.vocab),
            length,
            models.builder(config),
            units=config.units,
            embed_size=config.embed_size,
            embedding_init=config.embedding_init,
        ),
        train_data=lambda step: streams.generated_batches(batch, step),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        valid_data=lambda: streams.fixed_batches((valid.inputs, valid.answer), eval_batch),
        test_data=lambda: streams.fixed_batches((test.inputs, test.answer), eval_batch),
        references={"accuracy": {"commonest answer": majority}},
        task_results={
            "babi_task": number,
            "task_name": files.BABI_TASKS[number],
            "babi_set": config.babi_set,
            "vocab_size": len(babi_task.vocab),
            "story_maxlen": babi_task.story_maxlen,
            "question_maxlen": babi_task.question_maxlen,
            "train_size": n_train,
            "valid_size": len(valid.answer),
            "test_size": len(test.answer),
            "chance": chance,
            "commonest_answer_baseline": majority,
        },
        title=title,
    )


def _one_task(config, on_progress=None):
    number = int(config.task)
    babi_task = data.load_task(number, config.babi_set, config.data_dir)
    title = f"bAbI qa{number} {files.BABI_TASKS[number]} ({config.babi_set}): {config.model_label()}"
    return loop.run(make_task(number, babi_task, config, title=title), config.run_config(), on_progress)


def sub_configs(config):
    """{task number: the config of its sub-run}: what `--task=N --output_dir=<output_dir>/qaN` gives."""
    return {
        n: dataclasses.replace(config, task=str(n), output_dir=os.path.join(config.output_dir, f"qa{n}"))
        for n in data.parse_tasks(config.task)
    }


def main(config):
    numbers = data.parse_tasks(config.task)
    data.check_files(numbers, config.babi_set, config.data_dir)  # all of them before anything trains
    if len(numbers) == 1:
        return _one_task(config)
    subs = [
        multitask.SubRun(
            key=f"qa{n}",
            folder=f"qa{n}",
            run=lambda on_progress, c=sub: _one_task(c, on_progress),
            info={"task_name": files.BABI_TASKS[n]},
        )
        for n, sub in sub_configs(config).items()
    ]
    run_config = config.run_config()
    return multitask.run_all(
        subs,
        config.output_dir,
        task="babi",
        model=config.model,
        flags=run_config.flags,
        flagfile_text=run_config.flagfile_text,
        bar_metric=("test", "accuracy"),
        title=f"bAbI ({config.babi_set}), {len(numbers)} tasks: {config.model_label()}",
        extra_results={"babi_set": config.babi_set, "babi_tasks": numbers},
    )


if __name__ == "__main__":
    APP.run(main)
