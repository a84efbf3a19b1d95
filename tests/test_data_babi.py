"""bAbI parsing, vocabulary and vectorisation: a hand-written fixture, then the real files."""

import pathlib
import re

import numpy as np
import pytest

from rum_tf.data import babi, files

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "babi_tiny.txt"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))


# ---------------------------------------------------------------------------- the fixture

S1 = ("Anna", "walked", "to", "the", "library", ".")
S2 = ("Bruno", "ran", "into", "the", "cellar", ".")
S4 = ("Anna", "grabbed", "the", "lamp", ",", "then", "left", ".")
S5 = ("Anna", "went", "to", "the", "attic", ".")
C1 = ("Clara", "picked", "up", "the", "kite", ".")
C2 = ("Clara", "took", "the", "ball", ".")

EXPECTED = [
    babi.Example((S1, S2), (1, 2), ("Where", "is", "Anna", "?"), "library", (1,)),
    babi.Example((S1, S2, S4, S5), (1, 2, 4, 5), ("Where", "is", "the", "lamp", "?"), "attic", (4, 5)),
    babi.Example((S1, S2, S4, S5), (1, 2, 4, 5), ("What", "is", "Bruno", "carrying", "?"), "nothing", (2,)),
    babi.Example((C1, C2), (1, 2), ("What", "is", "Clara", "carrying", "?"), "kite,ball", (1, 2)),
    babi.Example((C1, C2), (1, 2), ("Is", "Clara", "happy", "?"), "maybe", ()),
]

VOCAB = [
    "<pad>",
    ",",
    ".",
    "?",
    "Anna",
    "Bruno",
    "Clara",
    "Is",
    "What",
    "Where",
    "attic",
    "ball",
    "carrying",
    "cellar",
    "grabbed",
    "happy",
    "into",
    "is",
    "kite",
    "kite,ball",
    "lamp",
    "left",
    "library",
    "maybe",
    "nothing",
    "picked",
    "ran",
    "the",
    "then",
    "to",
    "took",
    "up",
    "walked",
    "went",
]


def test_tokenize():
    assert babi.tokenize("Where is Mary? ") == ["Where", "is", "Mary", "?"]
    assert babi.tokenize("Anna grabbed the lamp, then left.") == list(S4)


def test_parse_fixture():
    examples = babi.read_examples(FIXTURE)
    assert examples == EXPECTED
    assert examples[1].story_tokens == list(S1 + S2 + S4 + S5)


def test_parse_accepts_str_and_bytes_lines():
    text = FIXTURE.read_text()
    assert babi.parse_stories(text.splitlines()) == EXPECTED
    assert babi.parse_stories(text.encode().splitlines(keepends=True)) == EXPECTED


def test_parse_rejects_line_without_id():
    with pytest.raises(ValueError, match="line 2"):
        babi.parse_stories(["1 Anna walked.", "Anna ran."])


def test_vocab_fixture():
    assert babi.build_vocab(babi.read_examples(FIXTURE)) == VOCAB


def test_vectorize_fixture():
    examples = babi.read_examples(FIXTURE)
    arrays = babi.vectorize(examples, VOCAB)
    assert arrays.story.shape == (5, 26) and arrays.question.shape == (5, 5)
    assert arrays.story.dtype == arrays.question.dtype == arrays.answer.dtype == np.int32
    # Story left-padded, question right-padded.
    np.testing.assert_array_equal(arrays.story[0], [0] * 14 + [4, 32, 29, 27, 22, 2, 5, 26, 16, 27, 13, 2])
    np.testing.assert_array_equal(arrays.question[0], [9, 17, 4, 3, 0])
    np.testing.assert_array_equal(arrays.story[4], [0] * 15 + [6, 25, 31, 27, 18, 2, 6, 30, 27, 11, 2])
    np.testing.assert_array_equal(arrays.question[4], [7, 6, 15, 3, 0])
    np.testing.assert_array_equal(arrays.answer, [22, 10, 24, 19, 23])
    assert arrays.inputs.shape == (5, 31)
    np.testing.assert_array_equal(arrays.inputs[0, -5:], [9, 17, 4, 3, 0])


def test_vectorize_lengths():
    examples = babi.read_examples(FIXTURE)
    arrays = babi.vectorize(examples, VOCAB, story_maxlen=30, question_maxlen=6)
    assert arrays.story.shape == (5, 30) and arrays.question.shape == (5, 6)
    short = babi.vectorize(examples, VOCAB, story_maxlen=4)
    np.testing.assert_array_equal(short.story[0], [16, 27, 13, 2])  # the story's end is kept
    with pytest.raises(ValueError, match="question_maxlen"):
        babi.vectorize(examples, VOCAB, question_maxlen=4)
    with pytest.raises(ValueError, match="'attic'"):
        babi.vectorize(examples, [t for t in VOCAB if t != "attic"])


def test_split_validation():
    arrays = babi.vectorize(babi.read_examples(FIXTURE) * 4, VOCAB)  # 20 examples
    train, valid = babi.split_validation(arrays)
    assert (len(train.answer), len(valid.answer)) == (18, 2)
    np.testing.assert_array_equal(valid.story, arrays.story[18:])
    np.testing.assert_array_equal(train.answer, arrays.answer[:18])
    with pytest.raises(ValueError):
        babi.split_validation(arrays, 1.0)


@pytest.mark.parametrize("task", [0, 21, "1", 1.0, True])
def test_task_out_of_range(task):
    with pytest.raises(ValueError, match=r"1\.\.20"):
        babi.load_task(task)


def test_bad_set():
    with pytest.raises(ValueError, match="en-10k"):
        babi.load_task(1, babi_set="hn")


# ---------------------------------------------------------------------------- real files


def test_every_en_train_file_has_1000_questions(data_dir):
    for task in range(1, 21):
        examples = babi.load_examples(task, "train", "en", data_dir)
        assert len(examples) == 1000, task
        assert all(ex.story and ex.question and ex.answer for ex in examples), task


def test_task1_vocab_and_lengths(data_dir):
    data = babi.load_task(1, "en", data_dir)
    assert data.vocab == [
        "<pad>",
        ".",
        "?",
        "Daniel",
        "John",
        "Mary",
        "Sandra",  # the actors
        "Where",
        "back",
        "bathroom",
        "bedroom",
        "garden",
        "hallway",  # places (with kitchen, office below)
        "is",
        "journeyed",
        "kitchen",
        "moved",
        "office",
        "the",
        "to",
        "travelled",
        "went",
    ]
    assert data.question_maxlen == 4  # "Where is Mary ?"
    assert data.story_maxlen == 66
    assert data.train.story.shape == (1000, 66) and data.test.question.shape == (1000, 4)
    # Every story has left padding only: after the first token, no padding.
    nonpad = data.train.story != 0
    assert (np.diff(nonpad.astype(int), axis=1) >= 0).all()


def test_task1_longest_story_counted_independently(data_dir):
    # Count story tokens without the parser: words plus one "." per sentence.
    longest = 0
    for split in ("train", "test"):
        story = 0
        for line in open(files.babi_file(1, split, data_dir=data_dir)):
            line_id, text = line.split(" ", 1)
            if line_id == "1":
                story = 0
            if "\t" in text:
                longest = max(longest, story)
            else:
                story += len(re.sub(r"\.", " .", text).split())
    assert longest == 66


def test_answers_are_single_tokens(data_dir):
    data = babi.load_task(19, "en", data_dir)
    assert "n,w" in data.vocab or "s,e" in data.vocab
    decoded = {data.vocab[i] for i in data.train.answer}
    assert all(re.fullmatch(r"[nsew],[nsew]", a) for a in decoded)


def test_missing_en10k_qa3_train(data_dir):
    with pytest.raises(files.DataError) as err:
        babi.load_task(3, "en-10k", data_dir)
    msg = str(err.value)
    rel = "tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"
    assert f"missing bAbI file {rel}" in msg
    assert f"{data_dir}/babi/{rel}" in msg and "\n" not in msg
