"""TensorFlow Datasets builders for bAbI and character-level PTB; importing registers them.

``rum_babi/<set>-qa<N>`` (e.g. ``rum_babi/en-qa1``, ``rum_babi/en-10k-qa20``): one example
per question, in file order, with features ``story`` (the story tokens before the question,
flattened), ``question`` (tokens), ``answer`` (one token) and ``supporting`` (line ids of the
supporting facts). ``info.metadata["vocab"]`` is the task's vocabulary (``babi.build_vocab``
over train and test), so ``babi.vectorize_tokens`` gives the same arrays as ``babi.load_task``.

``rum_char_ptb``: one example per split holding the whole text as ``ids`` (int32 char ids),
since truncated BPTT reads each split as one stream; ``info.metadata["vocab"]`` lists the
50 byte values in id order.

Both read the files through ``rum_tf.data.files``: from the TFDS manual dir when one is given
(``download_config=tfds.download.DownloadConfig(manual_dir=...)``, same layouts as
``--data_dir``), else from ``$RUM_TF_DATA_DIR``, the cache or a verified download.
"""

import numpy as np
import tensorflow_datasets as tfds

from rum_tf.data import babi, files, ptb

_INSTRUCTIONS = (
    "Optional: the manual dir may hold the data in any layout that --data_dir accepts "
    "(see docs/DATA.md); without one the files come from $RUM_TF_DATA_DIR, the cache or "
    "a checksummed download."
)


def _local_folder(dl_manager):
    """The manual dir if the user gave a non-empty one, else None (files then searches on)."""
    try:
        return str(dl_manager.manual_dir)
    except (AssertionError, ValueError):
        return None


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common base: files.py verifies every file, so TFDS's URL-checksum file is not used."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    VERSION = tfds.core.Version("1.0.0")

    # code_path only locates TFDS's checksum file; finding it needs `importlib_resources`,
    # which some tensorflow-datasets installs lack, so the lookup is skipped.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None


class RumBabiConfig(tfds.core.BuilderConfig):
    """One bAbI v1.2 task of one set (``en`` = 1k, ``en-10k``)."""

    def __init__(self, *, babi_set, task, **kwargs):
        super().__init__(
            name=f"{babi_set}-qa{task}",
            description=f"bAbI v1.2 {babi_set} task {task} ({files.BABI_TASKS[task]})",
            **kwargs,
        )
        self.babi_set = babi_set
        self.task = task


class RumBabi(_Builder):
    """bAbI QA v1.2, parsed and tokenised as rum_tf.data.babi does."""

    BUILDER_CONFIGS = [RumBabiConfig(babi_set=s, task=t) for s in files.BABI_SETS for t in files.BABI_TASKS]

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "story": tfds.features.Sequence(tfds.features.Text()),
                    "question": tfds.features.Sequence(tfds.features.Text()),
                    "answer": tfds.features.Text(),
                    "supporting": tfds.features.Sequence(np.int32),
                }
            ),
            metadata=tfds.core.MetadataDict(),
            # File order is kept so that "the last 10 % of train" means what it does in babi.py.
            disable_shuffling=True,
            homepage="https://research.facebook.com/downloads/babi/",
        )

    def _split_generators(self, dl_manager):
        folder = _local_folder(dl_manager)
        cfg = self.builder_config
        splits = {split: babi.load_examples(cfg.task, split, cfg.babi_set, folder) for split in files.BABI_SPLITS}
        self.info.metadata["vocab"] = babi.build_vocab(*splits.values())
        return {split: self._generate_examples(examples) for split, examples in splits.items()}

    def _generate_examples(self, examples):
        for i, ex in enumerate(examples):
            yield (
                i,
                {
                    "story": ex.story_tokens,
                    "question": list(ex.question),
                    "answer": ex.answer,
                    "supporting": list(ex.supporting),
                },
            )


class RumCharPtb(_Builder):
    """Character-level Penn Treebank as id streams, one example per split."""

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                }
            ),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
            homepage="https://www.fit.vutbr.cz/~imikolov/rnnlm/",
        )

    def _split_generators(self, dl_manager):
        folder = _local_folder(dl_manager)
        raw = {split: ptb.read_bytes(split, folder) for split in files.PTB_SPLITS}
        vocab = ptb.build_vocab(raw["train"])
        self.info.metadata["vocab"] = list(vocab)
        return {split: self._generate_examples(ptb.encode(data, vocab)) for split, data in raw.items()}

    def _generate_examples(self, ids):
        yield 0, {"ids": ids}
