"""Character-level Penn Treebank (SPEC §3, §4): bits per character with truncated BPTT.

    python -m tasks.ptb --flagfile=flags/ptb/fs_rum2.cfg --output_dir=runs/ptb_fs_rum2
    python -m tasks.ptb --flagfile=flags/quick/ptb/fs_rum2.cfg --output_dir=runs/quick/ptb_fs_rum2

Characters -> Embedding -> recurrent layer(s) -> Dense(50) logits, in windows of --num_steps
characters whose state carries over (`bptt.CarryState`), reset every epoch and evaluation. One
evaluation interval is one epoch (--epochs replaces --steps): validation BPC at --batch_size, the
best-validation weights tested at --test_batch_size. The defaults are FS-RUM-2's with the official
optimisation (Adam 2e-3, clip norm 1.0, learning rate x0.1 after --lr_drop_epoch=181 epochs);
flags/ptb/ holds the paper's rows, each flagfile setting every value.
"""

import dataclasses

import keras

from rum_tf import bptt
from rum_tf.config import flags, models
from rum_tf.data import ptb as data
from rum_tf.data import streams
from rum_tf.training import distribute, loop
from tasks import text_flags


@dataclasses.dataclass(frozen=True)
class PTB:
    num_layers: int = flags.integer(
        1, "Models that stack (not fast-slow): number of stacked recurrent layers.", minimum=1
    )
    num_steps: int = flags.integer(
        150, "Truncated-BPTT length: characters per window; the state carries over to the next window.", minimum=1
    )
    epochs: int = flags.integer(200, "Training epochs (passes over the training text).", minimum=1, resume_neutral=True)
    lr_drop_epoch: int = flags.integer(
        181,
        "Epochs at the full learning rate; later ones use x0.1 (0 = never). The "
        "official code drops after its epoch index 180.",
        minimum=0,
    )
    test_batch_size: int = flags.integer(20, "Batch size (rows) of the final test.", minimum=1)
    max_chars: int | None = flags.integer(
        None, "Train on this prefix of the training text (quick runs; unset = all).", minimum=1
    )
    max_eval_chars: int | None = flags.integer(
        None, "Validate and test on these prefixes of the validation and test texts (unset = all).", minimum=1
    )


def _one_device(config):  # the state carried across batches lives on one device
    if config.strategy != "default":
        raise ValueError(f"--strategy={config.strategy}: the PTB model carries its state; use --strategy=default")


APP = flags.TaskConfig(
    "ptb",
    (flags.Model, flags.Optimizer, flags.Run, flags.Official, flags.FastSlow, PTB, text_flags.Text),
    exclude=("steps", "eval_every", "eval_batch_size"),  # epochs; validation at --batch_size, test at its own
    defaults=dict(
        model="fs_rum",
        units=1000,
        lambda_=0,
        eta=1.0,
        use_layer_norm=True,
        zoneout_keep_h=0.9,
        batch_size=128,
        optimizer="adam",
        learning_rate=2e-3,
        clip_norm=1.0,
        embed_size=128,
    ),
    checks=(_one_device,),
)


def recurrent_layers(model, units, num_layers, seed, options):
    """() -> the recurrent layers (`models.recurrent_stack`), each carrying its state across batches."""

    def make():
        stack = models.recurrent_stack(
            model, units, num_layers, seed=seed, options=options, return_sequences=True, return_state=True
        )
        return [bptt.CarryState(layer, name="rnn" if len(stack) == 1 else f"rnn_{i}") for i, layer in enumerate(stack)]

    return make


def build_model(batch_size, num_steps, vocab_size, embed_size, layers):
    """chars [batch, num_steps] -> Embedding -> `layers()` -> Dense(vocab) logits at every step; the embedding
    and the output kernel start orthogonal, the output bias uniform(±0.01), as the official code."""
    chars = keras.Input(batch_shape=(batch_size, num_steps), dtype="int32", name="chars")
    x = keras.layers.Embedding(vocab_size, embed_size, embeddings_initializer="orthogonal", name="embedding")(chars)
    for layer in layers():
        x = layer(x)
    logits = keras.layers.Dense(
        vocab_size,
        kernel_initializer="orthogonal",
        bias_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
        name="output",
    )(x)
    return keras.Model(chars, logits, name="char_ptb")


def _windows(ids, batch, num_steps, what):
    try:
        return data.bptt_batches(ids, batch, num_steps)
    except ValueError as e:
        raise loop.RunError(f"the {what}: {e}") from None


def make_task(corpus, config):
    """The PTB `loop.Task` of `config` and its steps (windows) per epoch, from `corpus` (a `data.PTBData`)."""
    vocab_size, batch, steps, c = len(corpus.vocab), config.batch_size, config.num_steps, config
    x, y = _windows(corpus.train, batch, steps, "training text (--max_chars)")
    vx, vy = _windows(corpus.valid, batch, steps, "validation text (--max_eval_chars) at --batch_size")
    tx, ty = _windows(corpus.test, c.test_batch_size, steps, "test text (--max_eval_chars) at --test_batch_size")
    layers = recurrent_layers(c.model, c.units, c.num_layers, c.seed, c.model_options())
    sizes = (
        f"{c.num_layers}x{c.units}"
        if models.get(c.model).stackable
        else f"fast {c.fast_layers}x{c.fast_units}, slow {c.units}"
    )
    build = lambda rows: build_model(rows, steps, vocab_size, c.embed_size, layers)  # noqa: E731
    jit_compile = distribute.resolve_jit_compile(c.jit_compile)
    unigram = data.unigram_entropy(corpus.train, vocab_size)

    def chars_per_second(summary):
        time_s = summary.get("train_time_s")
        return {"train_chars_per_s": round(summary["steps"] * batch * steps / time_s, 1) if time_s else None}

    task = loop.Task(
        name="ptb",
        build_model=lambda: build(batch),
        train_data=lambda step: streams.epoch_stream(x, y, step),
        loss=bptt.SequenceLoss(steps),
        metrics=[bptt.bpc_metric()],
        valid_data=lambda: streams.windows_dataset(vx, vy),
        test_fn=lambda model: bptt.evaluate_at_batch(
            model,
            lambda: build(c.test_batch_size),
            tx,
            ty,
            bptt.SequenceLoss(steps),
            [bptt.bpc_metric()],
            jit_compile=jit_compile,
        ),
        keep_best=("val_bpc", "min"),
        references={"bpc": {"unigram entropy": unigram}},
        task_results={
            "epochs": c.epochs,
            "vocab_size": vocab_size,
            "num_steps": steps,
            "batch_size": batch,
            "test_batch_size": c.test_batch_size,
            "steps_per_epoch": len(x),
            "train_chars": int(x.size),
            "valid_chars": int(vx.size),
            "test_chars": int(tx.size),
            "unigram_entropy_bits": unigram,
            "unigram_test_bpc": data.unigram_cross_entropy(corpus.train, corpus.test, vocab_size),
        },
        callbacks=[
            bptt.StateResetter(),
            bptt.lr_drop_schedule(c.learning_rate, c.lr_drop_epoch),
            bptt.CharsPerSecond(batch * steps),
        ],
        title=f"char-PTB: {c.model} {sizes}",
        resume_neutral=("config",),  # run folders made while --config existed saved it; it set nothing else
        finish_results=chars_per_second,
    )
    return task, len(x)


def main(config):
    corpus = data.load_ptb(config.data_dir, max_chars=config.max_chars, max_eval_chars=config.max_eval_chars)
    task, steps_per_epoch = make_task(corpus, config)
    run_config = config.run_config(steps=config.epochs * steps_per_epoch, eval_every=steps_per_epoch)
    symbol_order = None
    if config.init_from_official:  # the official reader numbers the characters by frequency
        official_vocab = data.official_vocab(data.read_bytes("train", config.data_dir))
        symbol_order = [official_vocab.index(symbol) for symbol in corpus.vocab]
    return loop.run(*config.from_official(task, run_config, symbol_order))


if __name__ == "__main__":
    APP.run(main)
