"""Character-level Penn Treebank (SPEC §3, §4): bits per character with truncated BPTT.

    python -m tasks.ptb --config=fs_rum2 --output_dir=runs/ptb_fs_rum2
    python -m tasks.ptb --flagfile=flags/quick/ptb/fs_rum2.cfg --output_dir=runs/quick/ptb_fs_rum2

Characters (50 symbols) -> Embedding(50, --embed_size) -> recurrent layer(s) ->
Dense(50) logits at every step. The training text is cut into --batch_size rows read in
windows of --num_steps characters; the state is carried from each window to the next
(`rum_tf.training.bptt.CarryState`, on every backend) and reset at the start of every
epoch and of every evaluation. Dropout and zoneout act only in training. Validation BPC
after every epoch (at the training batch size, as the official code), the best-validation
weights kept, the test BPC at the end on a second model, of batch --test_batch_size (20),
holding those weights.

--config picks one of the paper's configurations (flags given explicitly override it):

    fs_rum2    FS-RUM-2: fast 2 x LN-LSTM(700), slow RUM(1000) eta=1.0, layer norm,
               zoneout keep_h 0.9 (c 0.5), dropout keep 0.65; 200 epochs
    fs_lstm2   FS-LSTM-2: the same with a slow LN-LSTM(400); 200 epochs
    rum2000    one RUM(2000) layer, eta=1.0, layer norm, zoneout 0.9; 100 epochs
    rum1500x2  two RUM(1500) layers, eta=0.3, layer norm, zoneout 0.9; 100 epochs
    fs_goru    FS-GORU: fast 2 x LN-LSTM(700), slow GORU(1000, capacity 2); 200 epochs

Optimisation as the official code: Adam 2e-3, gradients clipped to global norm 1.0, the
cost summed over the window and averaged over the batch, the learning rate x0.1 after
--lr_drop_epoch epochs (181: its `if i == 180` drop). One evaluation interval of the
harness is one epoch, so --epochs replaces --steps / --eval_every. Characters per second
(training) are logged every epoch and stored in results.json.
"""

import dataclasses

import keras
import numpy as np
from absl import flags

from rum_tf.data import files
from rum_tf.data import ptb as data
from rum_tf.training import bptt, distribute, fast_slow, loop, models, results
from rum_tf.training import flags as training_flags
from tasks import text_flags

FLAGS = flags.FLAGS

# The paper's configurations: values for the flags a configuration fixes (SPEC §4).
_RUM = dict(lambda_=0, use_layer_norm=True, zoneout_keep_h=0.9)
_FS = dict(fast_units=700, fast_layers=2, keep_prob=0.65, zoneout_keep_h=0.9, zoneout_keep_c=0.5, epochs=200)
CONFIGS = {
    "fs_rum2": dict(model="fs_rum", units=1000, eta=1.0, **{**_RUM, **_FS}),
    "fs_lstm2": dict(model="fs_lstm", units=400, **_FS),
    "rum2000": dict(model="rum", units=2000, num_layers=1, eta=1.0, epochs=100, **_RUM),
    "rum1500x2": dict(model="rum", units=1500, num_layers=2, eta=0.3, epochs=100, **_RUM),
    # The paper's FS-GORU baseline; the slow size is not in SPEC: the FS-RUM-2 slow size is used.
    "fs_goru": dict(model="fs_goru", units=1000, capacity=2, **_FS),
}
# Flags that only some models take.
_FS_ONLY = ("fast_units", "fast_layers", "keep_prob")
_LN_LSTM_ONLY = ("zoneout_keep_c",)
_STACK_ONLY = ("num_layers",)

CONFIG = flags.DEFINE_enum("config", "fs_rum2", list(CONFIGS), "Paper configuration: sets --model, --units and the "
                           "model's arguments, --epochs; flags given explicitly override it.")
FAST_UNITS = flags.DEFINE_integer("fast_units", 700, "Fast-slow models: size of the fast LN-LSTM cells.")
FAST_LAYERS = flags.DEFINE_integer("fast_layers", 2, "Fast-slow models: number of fast cells (>= 2).")
KEEP_PROB = flags.DEFINE_float("keep_prob", 0.65, "Fast-slow models: dropout keep probability (training only).")
ZONEOUT_KEEP_C = flags.DEFINE_float("zoneout_keep_c", 0.5, "LN-LSTM cells: zoneout keep probability of c "
                                    "(unset = off).")
NUM_LAYERS = flags.DEFINE_integer("num_layers", 1, "Other models: number of stacked recurrent layers.")
NUM_STEPS = flags.DEFINE_integer("num_steps", 150, "Truncated-BPTT length: characters per window; the state "
                                 "carries over to the next window.")
EPOCHS = flags.DEFINE_integer("epochs", 200, "Training epochs (passes over the training text).")
LR_DROP_EPOCH = flags.DEFINE_integer("lr_drop_epoch", 181, "Epochs at the full learning rate; later ones use x0.1 "
                                     "(0 = never). The official code drops after its epoch index 180.")
TEST_BATCH_SIZE = flags.DEFINE_integer("test_batch_size", 20, "Batch size (rows) of the final test.")
MAX_CHARS = flags.DEFINE_integer("max_chars", None, "Train on this prefix of the training text (quick runs; "
                                 "unset = all).")
MAX_EVAL_CHARS = flags.DEFINE_integer("max_eval_chars", None, "Validate and test on these prefixes of the "
                                      "validation and test texts (unset = all).")

for _name, _low in (("fast_units", 1), ("fast_layers", 2), ("num_layers", 1), ("num_steps", 1), ("epochs", 1),
                    ("lr_drop_epoch", 0), ("test_batch_size", 1)):
    flags.register_validator(_name, lambda v, low=_low: v is not None and v >= low, f"--{_name} must be >= {_low}")
flags.register_validator("keep_prob", lambda v: v is not None and 0 < v <= 1, "--keep_prob must be in (0, 1]")
flags.register_validator("zoneout_keep_c", lambda v: v is None or 0 < v <= 1,
                         "--zoneout_keep_c must be in (0, 1] (or unset)")
flags.register_validator("max_chars", lambda v: v is None or v >= 1, "--max_chars must be >= 1 (or unset)")
flags.register_validator("max_eval_chars", lambda v: v is None or v >= 1, "--max_eval_chars must be >= 1 (or unset)")


class _PTBFlags(training_flags.TaskFlags):
    """The shared flags less --steps, --eval_every and --eval_batch_size: PTB counts in
    epochs (one evaluation each), validates at the training batch size and tests at
    --test_batch_size. Giving one of them is refused as not applying to this task."""

    EXCLUDED = ("steps", "eval_every", "eval_batch_size")

    def names(self):
        return [n for n in super().names() if n not in self.EXCLUDED]

    def _applicable(self, name):
        # Also leaves the fast-slow / stack flags out of flags.cfg and results.json
        # where the model does not take them.
        return _takes(FLAGS.model, name)


def _model_options():
    """The model-argument flags of the registry (RUM's and the baselines')."""
    return tuple(getattr(models, "MODEL_OPTIONS", models.RUM_OPTIONS))


def _takes(model, name):
    """Whether `model` takes the flag `name` (a model argument or one of the PTB model flags)."""
    if name in _model_options():
        return name in models.get(model).options
    if name in _FS_ONLY:
        return model in fast_slow.FS_MODELS
    if name in _LN_LSTM_ONLY:
        return model in fast_slow.FS_MODELS
    if name in _STACK_ONLY:
        return model not in fast_slow.FS_MODELS
    return True


def _apply_config():
    """Fill the flags not given explicitly from --config, then check the model's flags."""
    preset = CONFIGS[FLAGS.config]
    if not FLAGS["model"].present:
        FLAGS["model"].value = preset["model"]
    model = FLAGS.model
    for name, value in preset.items():
        if name != "model" and not FLAGS[name].present and _takes(model, name):
            FLAGS[name].value = value
    for name in _model_options() + _FS_ONLY + _LN_LSTM_ONLY + _STACK_ONLY:
        if FLAGS[name].present and not _takes(model, name):
            raise ValueError(f"--{name} does not apply to --model={model}")
    if FLAGS.strategy != "default":
        raise ValueError(f"--strategy={FLAGS.strategy}: the PTB model carries its state across batches on one "
                         "device; use --strategy=default")


APP = _PTBFlags(
    "ptb",
    groups=("model", "optimizer", "run", "official"),
    defaults=dict(CONFIGS["fs_rum2"], batch_size=128, optimizer="adam", learning_rate=2e-3, clip_norm=1.0,
                  embed_size=128),
    own=(CONFIG, FAST_UNITS, FAST_LAYERS, KEEP_PROB, ZONEOUT_KEEP_C, NUM_LAYERS, NUM_STEPS, EPOCHS, LR_DROP_EPOCH,
         TEST_BATCH_SIZE, MAX_CHARS, MAX_EVAL_CHARS) + text_flags.OWN,
    checks=(_apply_config,),
)


def recurrent_layers(model, units, num_layers, seed, options, fs_arguments):
    """() -> the recurrent layers, each carrying its state across batches (`bptt.CarryState`):
    one fast-slow layer, or `num_layers` stacked layers of `model`."""

    def make():
        kwargs = dict(return_sequences=True, return_state=True)
        if model in fast_slow.FS_MODELS:
            layer = models.recurrent_layer(model, units, seed=seed, options=options, name="fast_slow", **fs_arguments,
                                           **kwargs)
            return [bptt.CarryState(layer, name="rnn")]
        stack = [models.recurrent_layer(model, units, seed=seed + i, options=options, name=f"{model}_{i}", **kwargs)
                 for i in range(num_layers)]
        return [bptt.CarryState(layer, name="rnn" if num_layers == 1 else f"rnn_{i}") for i, layer in enumerate(stack)]

    return make


def build_model(batch_size, num_steps, vocab_size, embed_size, layers):
    """chars [batch, num_steps] -> Embedding -> `layers()` -> Dense(vocab) logits at every step.

    The embedding and the output kernel start orthogonal, the output bias uniform(±0.01),
    as the official code (its init_scale 0.01).
    """
    chars = keras.Input(batch_shape=(batch_size, num_steps), dtype="int32", name="chars")
    x = keras.layers.Embedding(vocab_size, embed_size, embeddings_initializer="orthogonal", name="embedding")(chars)
    for layer in layers():
        x = layer(x)
    logits = keras.layers.Dense(vocab_size, kernel_initializer="orthogonal",
                                bias_initializer=keras.initializers.RandomUniform(-0.01, 0.01), name="output")(x)
    return keras.Model(chars, logits, name="char_ptb")


def unigram_entropy(ids, vocab_size):
    """Entropy in bits of the character frequencies of `ids`: the BPC of the best model
    that ignores context, on that text."""
    p = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def unigram_cross_entropy(train_ids, ids, vocab_size):
    """BPC on `ids` of the training text's character frequencies (add-one smoothed, so a
    character absent from a short training prefix costs finite bits)."""
    p = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    q = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    return float(-(q / q.sum() * np.log2(p / p.sum())).sum())


def _windows(ids, batch, num_steps, what):
    try:
        return data.bptt_batches(ids, batch, num_steps)
    except ValueError as e:
        raise loop.RunError(f"the {what}: {e}") from None


def make_task(corpus, *, batch_size, num_steps, test_batch_size, embed_size, layers, learning_rate, lr_drop_epoch,
              jit_compile=False, title="char-PTB", extra_results=None):
    """The PTB `loop.Task` and its steps per epoch, from `corpus` (a `data.PTBData`)."""
    vocab_size = len(corpus.vocab)
    x, y = _windows(corpus.train, batch_size, num_steps, "training text (--max_chars)")
    vx, vy = _windows(corpus.valid, batch_size, num_steps, "validation text (--max_eval_chars) at --batch_size")
    tx, ty = _windows(corpus.test, test_batch_size, num_steps, "test text (--max_eval_chars) at --test_batch_size")
    unigram = unigram_entropy(corpus.train, vocab_size)

    def build(batch):
        return build_model(batch, num_steps, vocab_size, embed_size, layers)

    def test(model):
        return bptt.evaluate_at_batch(model, lambda: build(test_batch_size), tx, ty, bptt.SequenceLoss(num_steps),
                                      [bptt.bpc_metric()], jit_compile=jit_compile)

    task = loop.Task(
        name="ptb",
        build_model=lambda: build(batch_size),
        train_data=lambda step: bptt.epoch_stream(x, y, step),
        loss=bptt.SequenceLoss(num_steps),
        metrics=[bptt.bpc_metric()],
        valid_data=lambda: bptt.windows_dataset(vx, vy),
        test_fn=test,
        keep_best=("val_bpc", "min"),
        references={"bpc": {"unigram entropy": unigram}},
        task_results={
            **dict(extra_results or {}),
            "vocab_size": vocab_size,
            "num_steps": num_steps,
            "batch_size": batch_size,
            "test_batch_size": test_batch_size,
            "steps_per_epoch": len(x),
            "train_chars": int(x.size),
            "valid_chars": int(vx.size),
            "test_chars": int(tx.size),
            "unigram_entropy_bits": unigram,
            "unigram_test_bpc": unigram_cross_entropy(corpus.train, corpus.test, vocab_size),
        },
        callbacks=[bptt.StateResetter(), bptt.lr_drop_schedule(learning_rate, lr_drop_epoch),
                   bptt.CharsPerSecond(batch_size * num_steps)],
        title=title,
    )
    return task, len(x)


def main(argv):
    del argv
    try:
        corpus = data.load_ptb(FLAGS.data_dir, max_chars=FLAGS.max_chars, max_eval_chars=FLAGS.max_eval_chars)
    except files.DataError as e:
        raise loop.RunError(str(e)) from None
    fs_arguments = dict(fast_units=FLAGS.fast_units, fast_layers=FLAGS.fast_layers, keep_prob=FLAGS.keep_prob,
                        zoneout_keep_c=FLAGS.zoneout_keep_c)
    layers = recurrent_layers(FLAGS.model, FLAGS.units, FLAGS.num_layers, FLAGS.seed, APP.model_options(),
                              fs_arguments)
    sizes = (f"fast {FLAGS.fast_layers}x{FLAGS.fast_units}, slow {FLAGS.units}" if FLAGS.model in fast_slow.FS_MODELS
             else f"{FLAGS.num_layers}x{FLAGS.units}")
    task, steps_per_epoch = make_task(
        corpus, batch_size=FLAGS.batch_size, num_steps=FLAGS.num_steps, test_batch_size=FLAGS.test_batch_size,
        embed_size=FLAGS.embed_size, layers=layers, learning_rate=FLAGS.learning_rate,
        lr_drop_epoch=FLAGS.lr_drop_epoch, jit_compile=distribute.resolve_jit_compile(FLAGS.jit_compile),
        title=f"char-PTB: {FLAGS.model} {sizes}",
        extra_results={"config": FLAGS.config, "epochs": FLAGS.epochs})
    config = APP.run_config()
    config = dataclasses.replace(config, steps=FLAGS.epochs * steps_per_epoch, eval_every=steps_per_epoch,
                                 resume_neutral=tuple(config.resume_neutral) + ("epochs", "data_dir"))
    symbol_order = None
    if FLAGS.init_from_official:  # the official reader numbers the characters by frequency
        official_vocab = data.official_vocab(data.read_bytes("train", FLAGS.data_dir))
        symbol_order = [official_vocab.index(symbol) for symbol in corpus.vocab]
    summary = loop.run(*APP.from_official(task, config, symbol_order))
    chars = summary["steps"] * FLAGS.batch_size * FLAGS.num_steps
    rate = round(chars / summary["train_time_s"], 1) if summary.get("train_time_s") else None
    if summary["task_results"].get("train_chars_per_s") != rate:
        summary["task_results"]["train_chars_per_s"] = rate
        summary.pop("schema", None)
        results.write_results(config.output_dir, summary)
        summary = results.read_results(config.output_dir)
    return summary


if __name__ == "__main__":
    APP.run(main)
