"""The TFDS builders give what the plain loaders give, offline, into a temporary data_dir."""

import numpy as np
import pytest

from rum_tf.data import babi, files, ptb

tfds = pytest.importorskip("tensorflow_datasets")
from rum_tf.data import tfds_builders  # noqa: E402  (registers the builders)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(files.ENV_DATA_DIR, raising=False)


def _kwargs(manual_dir):
    return {"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)}


def test_registered():
    names = tfds.list_builders()
    assert "rum_babi" in names and "rum_char_ptb" in names
    configs = [c.name for c in tfds_builders.RumBabi.BUILDER_CONFIGS]
    assert len(configs) == 40 and "en-qa1" in configs and "en-10k-qa20" in configs


def test_rum_babi_matches_loader(data_dir, tmp_path):
    ds, info = tfds.load(
        "rum_babi/en-qa1",
        data_dir=str(tmp_path / "tfds"),
        with_info=True,
        download_and_prepare_kwargs=_kwargs(data_dir),
    )
    plain = {s: babi.load_examples(1, s, "en", data_dir) for s in ("train", "test")}
    vocab = info.metadata["vocab"]
    assert vocab == babi.build_vocab(plain["train"], plain["test"])
    for split, examples in plain.items():
        got = list(tfds.as_numpy(ds[split]))
        assert len(got) == len(examples) == 1000
        for g, ex in zip(got, examples):  # file order is kept
            assert [t.decode() for t in g["story"]] == ex.story_tokens
            assert tuple(t.decode() for t in g["question"]) == ex.question
            assert g["answer"].decode() == ex.answer
            assert tuple(g["supporting"]) == ex.supporting
    # Vectorised through babi.vectorize, the TFDS examples give load_task's arrays.
    task = babi.load_task(1, "en", data_dir)
    test = list(tfds.as_numpy(ds["test"]))
    arrays = babi.vectorize_tokens(
        [[t.decode() for t in g["story"]] for g in test],
        [[t.decode() for t in g["question"]] for g in test],
        [g["answer"].decode() for g in test],
        vocab,
        task.story_maxlen,
        task.question_maxlen,
    )
    for a, b in zip(arrays, task.test):
        np.testing.assert_array_equal(a, b)


def test_rum_char_ptb_matches_loader(data_dir, tmp_path, monkeypatch):
    # No manual dir this time: the builder falls back to $RUM_TF_DATA_DIR.
    monkeypatch.setenv(files.ENV_DATA_DIR, str(data_dir))
    ds, info = tfds.load("rum_char_ptb", data_dir=str(tmp_path / "tfds"), with_info=True)
    plain = ptb.load_ptb()
    assert bytes(info.metadata["vocab"]) == plain.vocab
    for split in files.PTB_SPLITS:
        (example,) = list(tfds.as_numpy(ds[split]))
        np.testing.assert_array_equal(example["ids"], getattr(plain, split))


def test_missing_files_fail_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("no data here")  # TFDS ignores an empty manual dir
    with pytest.raises(files.DataError, match="missing bAbI file"):
        tfds.load("rum_babi/en-qa2", data_dir=str(tmp_path / "tfds"), download_and_prepare_kwargs=_kwargs(str(empty)))
