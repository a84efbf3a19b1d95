"""bAbI QA v1.2: parsing, vocabulary and vectorisation (SPEC §4).

File format: ``<id> <sentence>`` or ``<id> <question>\\t<answer>\\t<supporting ids>``; ids
restart at 1 with every new story. A question sees the story sentences before it, not the
earlier questions.

Choices where SPEC is silent:
- Tokens are runs of word characters and single punctuation characters (``.``, ``?``,
  ``,``); case is kept (``Where`` and ``where`` would be two tokens), as the text is
  machine-generated and capitalised consistently.
- An answer is one token exactly as written, so ``football,apple`` (task 8) and ``s,e``
  (task 19) are single vocabulary entries: the model picks one class.
- The vocabulary is ``<pad>`` (id 0) then every story, question and answer token of the
  task's train and test files, sorted.
"""

import collections
import re

import numpy as np

from rum_tf.data import files

PAD = "<pad>"

_TOKEN = re.compile(r"\w+|[^\w\s]")


class Example(collections.namedtuple("Example", ["story", "story_ids", "question", "answer", "supporting"])):
    """One question. ``story``: tokenised sentences before it; ``story_ids``: their line
    ids; ``question``: tokens; ``answer``: a string; ``supporting``: line ids of the facts."""

    __slots__ = ()

    @property
    def story_tokens(self):
        return [t for sentence in self.story for t in sentence]


class BabiArrays(collections.namedtuple("BabiArrays", ["story", "question", "answer"])):
    """int32 arrays: story [n, S] left-padded, question [n, Q] right-padded, answer [n]."""

    __slots__ = ()

    @property
    def inputs(self):
        """The model's input sequence: story tokens followed by question tokens, [n, S+Q]."""
        return np.concatenate([self.story, self.question], axis=1)


BabiTask = collections.namedtuple("BabiTask", ["train", "test", "vocab", "story_maxlen", "question_maxlen"])
BabiTask.__doc__ = "BabiArrays for train and test, the vocabulary list and the padded lengths."


def tokenize(text):
    """``"Where is Mary? "`` -> ``["Where", "is", "Mary", "?"]``."""
    return _TOKEN.findall(text)


def parse_stories(lines):
    """Examples from the lines of one task file (str or bytes lines)."""
    examples = []
    story, story_ids = [], []
    for number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        head, _, text = line.partition(" ")
        try:
            line_id = int(head)
        except ValueError:
            raise ValueError(f"bAbI line {number} does not start with a line id: {line!r}") from None
        if line_id == 1:
            story, story_ids = [], []
        if "\t" in text:
            question, answer, supporting = (text.split("\t") + ["", ""])[:3]
            examples.append(
                Example(
                    story=tuple(story),
                    story_ids=tuple(story_ids),
                    question=tuple(tokenize(question)),
                    answer=answer.strip(),
                    supporting=tuple(int(s) for s in supporting.split()),
                )
            )
        else:
            story.append(tuple(tokenize(text)))
            story_ids.append(line_id)
    return examples


def read_examples(path):
    """Examples of one task file."""
    with open(path, "rb") as f:
        return parse_stories(f)


def load_examples(task, split, babi_set="en", data_dir=None, download=None):
    """Examples of ``qa<task>``'s ``split`` file, found (or fetched) by ``files``."""
    return read_examples(files.babi_file(task, split, babi_set, data_dir, download))


def build_vocab(*example_lists):
    """``[PAD] + sorted(tokens)`` over the stories, questions and answers given."""
    tokens = set()
    for examples in example_lists:
        for ex in examples:
            for sentence in ex.story:
                tokens.update(sentence)
            tokens.update(ex.question)
            tokens.add(ex.answer)
    tokens.discard(PAD)
    return [PAD] + sorted(tokens)


def vectorize(examples, vocab, story_maxlen=None, question_maxlen=None):
    """BabiArrays of ``examples``; lengths default to the longest in ``examples``.

    A story longer than ``story_maxlen`` keeps its last tokens (those nearest the question);
    a question longer than ``question_maxlen`` or a token outside ``vocab`` is a ValueError.
    """
    return vectorize_tokens(
        [ex.story_tokens for ex in examples],
        [ex.question for ex in examples],
        [ex.answer for ex in examples],
        vocab,
        story_maxlen,
        question_maxlen,
    )


def vectorize_tokens(stories, questions, answers, vocab, story_maxlen=None, question_maxlen=None):
    """As ``vectorize``, from flat token lists (e.g. the ``rum_babi`` TFDS features)."""
    index = {token: i for i, token in enumerate(vocab)}

    def ids(tokens):
        try:
            return [index[t] for t in tokens]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the vocabulary") from None

    stories = [ids(s) for s in stories]
    questions = [ids(q) for q in questions]
    answers = ids(answers)
    S = max(map(len, stories), default=0) if story_maxlen is None else story_maxlen
    Q = max(map(len, questions), default=0) if question_maxlen is None else question_maxlen
    story = np.zeros((len(stories), S), np.int32)
    question = np.zeros((len(questions), Q), np.int32)
    for i, (s, q) in enumerate(zip(stories, questions)):
        if len(s) > S:
            s = s[len(s) - S :]
        story[i, S - len(s) :] = s
        if len(q) > Q:
            raise ValueError(f"question {i} has {len(q)} tokens, more than question_maxlen={Q}")
        question[i, : len(q)] = q
    return BabiArrays(story, question, np.asarray(answers, np.int32).reshape(-1))


def load_task(task, babi_set="en", data_dir=None, download=None):
    """One bAbI task vectorised: a BabiTask whose arrays share one vocabulary and lengths."""
    train = load_examples(task, "train", babi_set, data_dir, download)
    test = load_examples(task, "test", babi_set, data_dir, download)
    vocab = build_vocab(train, test)
    S = max(len(ex.story_tokens) for ex in train + test)
    Q = max(len(ex.question) for ex in train + test)
    return BabiTask(vectorize(train, vocab, S, Q), vectorize(test, vocab, S, Q), vocab, S, Q)


def split_validation(arrays, fraction=0.1):
    """(train, valid): the validation set is the last ``fraction`` of ``arrays``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction!r}")
    # The epsilon keeps float products such as 0.29 * 100 from rounding down.
    n = len(arrays.answer)
    cut = n - int(n * fraction + 1e-9)
    return (BabiArrays(*(a[:cut] for a in arrays)), BabiArrays(*(a[cut:] for a in arrays)))


ALL_TASKS = tuple(range(1, 21))


def parse_tasks(text):
    """ "all" -> 1..20; "3" -> [3]; "1,6,15" -> [1, 6, 15]. ValueError naming the problem."""
    text = (text or "").strip().lower()
    if text == "all":
        return list(ALL_TASKS)
    numbers = []
    for part in text.split(","):
        try:
            number = int(part.strip())
        except ValueError:
            raise ValueError(f"--task must be 1..20, a comma-separated list of them, or all; got {text!r}") from None
        if number not in ALL_TASKS:
            raise ValueError(f"--task must be in 1..20 (or all), got {number}")
        if number not in numbers:
            numbers.append(number)
    return numbers


def canonical_tasks(text):
    """--task written canonically ("all" or "1,6,15"), so that equal runs have equal flags."""
    numbers = parse_tasks(text)
    return "all" if text.strip().lower() == "all" else ",".join(map(str, numbers))


def check_files(numbers, babi_set, data_dir=None):
    """Find and verify every file of tasks `numbers` (files.DataError naming the first one missing)."""
    for number in numbers:
        for split in files.BABI_SPLITS:
            files.babi_file(number, split, babi_set, data_dir)


def official_batch_rows(step, n_train, batch_size):
    """The rows of training batch `step` in the official script: a*B .. a*B+B-1 (clipped),
    a = int(step mod (n_train / B)); no shuffling, the last batch of a pass is short."""
    a = int(step % (n_train / batch_size))
    return slice(a * batch_size, min((a + 1) * batch_size, n_train))


def baselines(train_answers, test_answers):
    """(chance = 1 / distinct train answers, accuracy of always giving the commonest train answer on test)."""
    counts = collections.Counter(int(a) for a in train_answers)
    commonest = counts.most_common(1)[0][0]
    return 1.0 / len(counts), float(np.mean(np.asarray(test_answers) == commonest))
