"""bAbI question answering v1.2 (SPEC §4): one model per task, story then question.

    python -m tasks.babi --flagfile=flags/babi/rum_en10k.cfg --output_dir=runs/babi_rum_en10k
    python -m tasks.babi --task=1 --babi_set=en --steps=1000 --output_dir=runs/babi_qa1

The input is the story's tokens (left-padded to the task's longest story) followed by the
question's tokens (right-padded), through one shared Embedding(vocabulary, --embed_size)
and one recurrent layer (--model, --units); the answer's logits over the vocabulary come
from the last state. Adam 1e-3, batch 32, 4,000 iterations, the last 10 % of the train
file held out for validation every 200 steps, the test on the final weights: the
official script's settings, which are the defaults.

--task is 1..20, a list (1,6,15) or all. One task trains in --output_dir; several train
one after another in --output_dir/qa<N>/ (each a complete, resumable run, the same run
as `--task=N --output_dir=.../qa<N>`), and --output_dir gets the per-task table and the
mean test accuracy (results.json task_results, runs.csv, runs.png, the mean curve).

Faithful details: training batch k holds train rows a*32 .. a*32+31 with
a = int(k mod (n_train / 32)), the official schedule (no shuffling; the last batch of a
pass is short). The embedding starts as the official normal(mean -sqrt(6/V), std
sqrt(6/V)) (a likely slip for uniform(±sqrt(6/V)), SPEC §6); --embedding_init=uniform
gives the latter. The output layer is uniform(±sqrt(6/(units + embed_size))), bias 0.01.
"""

import collections
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from rum_tf.data import babi as data
from rum_tf.data import files
from rum_tf.training import flags as training_flags
from rum_tf.training import inputs, loop, multitask
from tasks import text_flags

FLAGS = flags.FLAGS

ALL_TASKS = tuple(range(1, 21))


def parse_tasks(text):
    """"all" -> 1..20; "3" -> [3]; "1,6,15" -> [1, 6, 15]. ValueError naming the problem."""
    text = (text or "").strip().lower()
    if text == "all":
        return list(ALL_TASKS)
    numbers = []
    for part in text.split(","):
        part = part.strip()
        try:
            number = int(part)
        except ValueError:
            raise ValueError(f"--task must be 1..20, a comma-separated list of them, or all; got {text!r}") from None
        if number not in ALL_TASKS:
            raise ValueError(f"--task must be in 1..20 (or all), got {number}")
        if number not in numbers:
            numbers.append(number)
    return numbers


def _task_ok(text):
    try:
        parse_tasks(text)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    return True


TASK = flags.DEFINE_string("task", "all", "bAbI task: 1..20, a comma-separated list (1,6,15), or all; each task "
                           "trains its own model.")
BABI_SET = flags.DEFINE_enum("babi_set", "en-10k", list(files.BABI_SETS), "en (1,000 training questions per task) or "
                             "en-10k (10,000; the official script's).")
EMBEDDING_INIT = flags.DEFINE_enum("embedding_init", "official", ["official", "uniform"],
                                   "official: normal with mean -sqrt(6/V) and std sqrt(6/V), as the official script "
                                   "(SPEC §6: a likely slip); uniform: uniform in ±sqrt(6/V).")
flags.register_validator("task", _task_ok, "bad --task")


def _normalise_task():
    """--task written canonically ("all" or "1,6,15"), so equal runs have equal flags."""
    numbers = parse_tasks(FLAGS.task)
    FLAGS["task"].value = "all" if FLAGS.task.strip().lower() == "all" else ",".join(map(str, numbers))


APP = training_flags.TaskFlags(
    "babi",
    groups=("model", "optimizer", "run"),
    defaults=dict(model="rum", units=256, batch_size=32, optimizer="adam", learning_rate=1e-3, steps=4_000,
                  eval_every=200, embed_size=64),
    own=(TASK, BABI_SET, EMBEDDING_INIT) + text_flags.OWN,
    checks=(_normalise_task,),
)


def embedding_initializer(kind, vocab_size):
    scale = math.sqrt(6.0 / vocab_size)
    if kind == "official":
        return keras.initializers.RandomNormal(mean=-scale, stddev=scale)
    if kind == "uniform":
        return keras.initializers.RandomUniform(-scale, scale)
    raise ValueError(f"unknown embedding init {kind!r}")


def build_model(vocab_size, length, recurrent_layer, *, units, embed_size=64, embedding_init="official"):
    """tokens [length] -> Embedding(V, embed_size) -> recurrent layer (last state) -> Dense(V) logits."""
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_size, embeddings_initializer=embedding_initializer(
        embedding_init, vocab_size), name="embedding")(tokens)
    x = recurrent_layer(return_sequences=False, name="rnn")(x)
    limit = math.sqrt(6.0 / (units + embed_size))
    logits = keras.layers.Dense(vocab_size, kernel_initializer=keras.initializers.RandomUniform(-limit, limit),
                                bias_initializer=keras.initializers.Constant(0.01), name="output")(x)
    return keras.Model(tokens, logits, name="babi")


def official_batch_rows(step, n_train, batch_size):
    """The rows of training batch `step`: a*B .. a*B+B-1 (clipped), a = int(step mod (n_train / B))."""
    a = int(step % (n_train / batch_size))
    return slice(a * batch_size, min((a + 1) * batch_size, n_train))


def baselines(train_answers, test_answers):
    """(chance = 1 / distinct train answers, accuracy of always giving the commonest train answer on test)."""
    counts = collections.Counter(int(a) for a in train_answers)
    commonest = counts.most_common(1)[0][0]
    return 1.0 / len(counts), float(np.mean(np.asarray(test_answers) == commonest))


def make_task(number, babi_task, babi_set, batch_size, eval_batch_size, recurrent_layer, *, units, embed_size,
              embedding_init, title="bAbI"):
    """The `loop.Task` of bAbI task `number` from its `data.BabiTask`."""
    train, valid = data.split_validation(babi_task.train, 0.1)
    x, y = train.inputs, train.answer
    n_train, length = len(y), x.shape[1]
    test = babi_task.test
    chance, majority = baselines(train.answer, test.answer)

    def batch(step):
        rows = official_batch_rows(step, n_train, batch_size)
        return x[rows], y[rows]

    signature = (tf.TensorSpec((None, length), tf.int32), tf.TensorSpec((None,), tf.int32))
    return loop.Task(
        name="babi",
        build_model=lambda: build_model(len(babi_task.vocab), length, recurrent_layer, units=units,
                                        embed_size=embed_size, embedding_init=embedding_init),
        train_data=lambda step: inputs.generated_batches(batch, step, signature),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        valid_data=lambda: inputs.fixed_batches((valid.inputs, valid.answer), eval_batch_size),
        test_data=lambda: inputs.fixed_batches((test.inputs, test.answer), eval_batch_size),
        references={"accuracy": {"commonest answer": majority}},
        task_results={
            "babi_task": number,
            "task_name": files.BABI_TASKS[number],
            "babi_set": babi_set,
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


def _check_files(numbers, babi_set, data_dir):
    """Find and verify every file the run needs before anything trains; one-line RunError if not."""
    try:
        for number in numbers:
            for split in files.BABI_SPLITS:
                files.babi_file(number, split, babi_set, data_dir)
    except files.DataError as e:
        raise loop.RunError(str(e)) from None


def _load(number, babi_set, data_dir):
    try:
        return data.load_task(number, babi_set, data_dir)
    except files.DataError as e:
        raise loop.RunError(str(e)) from None


def _one_task(number, config):
    babi_task = _load(number, FLAGS.babi_set, FLAGS.data_dir)
    title = f"bAbI qa{number} {files.BABI_TASKS[number]} ({FLAGS.babi_set}): {APP.model_label()}"
    task = make_task(number, babi_task, FLAGS.babi_set, FLAGS.batch_size, APP.eval_batch_size, APP.recurrent_layer,
                     units=FLAGS.units, embed_size=FLAGS.embed_size, embedding_init=FLAGS.embedding_init, title=title)
    return loop.run(task, config)


def _sub_config(config, number, folder):
    """The RunConfig of task `number` in `folder`: what `--task=number --output_dir=folder` gives."""
    saved = FLAGS.task, FLAGS.output_dir
    try:
        FLAGS["task"].value, FLAGS["output_dir"].value = str(number), folder
        return dataclasses.replace(config, output_dir=folder, flags=APP.values(), flagfile_text=APP.flagfile_text())
    finally:
        FLAGS["task"].value, FLAGS["output_dir"].value = saved


def main(argv):
    del argv
    numbers = parse_tasks(FLAGS.task)
    _check_files(numbers, FLAGS.babi_set, FLAGS.data_dir)
    # --data_dir only says where the (checksum-verified) files are: a run may resume with another.
    config = APP.run_config()
    config = dataclasses.replace(config, resume_neutral=tuple(config.resume_neutral) + ("data_dir",))
    if len(numbers) == 1:
        return _one_task(numbers[0], config)
    subs = []
    for number in numbers:
        folder = f"qa{number}"
        sub_config = _sub_config(config, number, os.path.join(config.output_dir, folder))
        subs.append(multitask.SubRun(key=f"qa{number}", folder=folder,
                                     run=lambda n=number, c=sub_config: _one_task(n, c),
                                     info={"task_name": files.BABI_TASKS[number]}))
    return multitask.run_all(
        subs, config.output_dir, task="babi", model=FLAGS.model, flags=config.flags,
        flagfile_text=config.flagfile_text, bar_metric=("test", "accuracy"),
        title=f"bAbI ({FLAGS.babi_set}), {len(numbers)} tasks: {APP.model_label()}",
        extra_results={"babi_set": FLAGS.babi_set, "babi_tasks": numbers})


if __name__ == "__main__":
    APP.run(main)
