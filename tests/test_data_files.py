"""Finding, verifying and (offline) downloading data files. No test touches the network."""

import hashlib
import io
import pathlib
import shutil
import tarfile

import numpy as np
import pytest

from rum_tf.data import files

QA1_TEST = "tasks_1-20_v1-2/en/qa1_single-supporting-fact_test.txt"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "1")
    monkeypatch.setenv(files.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(files.ENV_DATA_DIR, raising=False)
    # Downloads in these tests only ever use file:// URLs; anything else is a bug.
    real_urlopen = files.urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        assert str(url).startswith("file://"), f"test tried the network: {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(files.urllib.request, "urlopen", urlopen)


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_table_covers_every_file():
    for task in files.BABI_TASKS:
        for babi_set in files.BABI_SETS:
            for split in files.BABI_SPLITS:
                key = "babi/" + files.babi_relpath(task, split, babi_set)
                assert files.expected_checksum(key), key
    for split in files.PTB_SPLITS:
        assert files.expected_checksum(f"ptb/ptb.{split}.txt")


def test_table_matches_shared_sha256sums(data_dir):
    sums = data_dir / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"{sums} absent")
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        assert files.expected_checksum(name) == ("sha256", digest), name


def test_shared_layout(data_dir, monkeypatch):
    path = files.babi_file(1, "test", "en", data_dir=str(data_dir))
    assert path == data_dir / "babi" / QA1_TEST
    assert files.ptb_file("valid", data_dir=data_dir) == data_dir / "ptb" / "ptb.valid.txt"
    monkeypatch.setenv(files.ENV_DATA_DIR, str(data_dir))  # the same, through the env var
    assert files.babi_file(1, "test") == path


def test_flat_layouts(data_dir, tmp_path):
    flat = tmp_path / "flat"
    (flat / "tasks_1-20_v1-2" / "en").mkdir(parents=True)
    shutil.copy(data_dir / "babi" / QA1_TEST, flat / QA1_TEST)
    shutil.copy(data_dir / "ptb" / "ptb.valid.txt", flat / "ptb.valid.txt")
    assert files.babi_file(1, "test", data_dir=flat) == flat / QA1_TEST
    assert files.ptb_file("valid", data_dir=flat) == flat / "ptb.valid.txt"
    # The tasks folder itself may be the data folder.
    assert files.babi_file(1, "test", data_dir=flat / "tasks_1-20_v1-2") == flat / QA1_TEST


def test_corrupted_copy_refused(data_dir, tmp_path):
    target = tmp_path / "data" / "babi" / QA1_TEST
    target.parent.mkdir(parents=True)
    data = bytearray((data_dir / "babi" / QA1_TEST).read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(files.DataError) as err:
        files.babi_file(1, "test", data_dir=tmp_path / "data")
    msg = str(err.value)
    assert "checksum mismatch" in msg and str(target) in msg and "\n" not in msg
    assert files.expected_checksum("babi/" + QA1_TEST)[1] in msg  # expected
    assert _sha256(target) in msg  # actual
    # Without verification the same file is handed out.
    assert files.babi_file(1, "test", data_dir=tmp_path / "data", verify=False) == target


def test_verification_is_remembered(data_dir, tmp_path, monkeypatch):
    target = tmp_path / "ptb" / "ptb.valid.txt"
    target.parent.mkdir()
    shutil.copy(data_dir / "ptb" / "ptb.valid.txt", target)
    files.ptb_file("valid", data_dir=tmp_path)
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(files, "file_digest", lambda *a: calls.append(a))
        files.ptb_file("valid", data_dir=tmp_path)
    assert not calls  # same path, size and mtime: not hashed again
    target.write_bytes(target.read_bytes()[:-1])  # a changed file is checked again
    with pytest.raises(files.DataError, match="checksum mismatch"):
        files.ptb_file("valid", data_dir=tmp_path)


def test_absent_data_message(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(files.DataError) as err:
        files.babi_file(2, "train", data_dir=empty, download=False)
    rel = "tasks_1-20_v1-2/en/qa2_two-supporting-facts_train.txt"
    assert str(err.value) == (
        f"missing bAbI file {rel}: put it at {empty}/babi/{rel} (data folder from --data_dir) "
        f"or put tasks_1-20_v1-2.tar.gz in {empty}; automatic download disabled by download=False"
    )
    with pytest.raises(files.DataError) as err:
        files.ptb_file("test")  # no folder at all, download disabled by the env var
    msg = str(err.value)
    assert msg == (
        "missing PTB file ptb.test.txt: put it at <data_dir>/ptb/ptb.test.txt (data folder set "
        "by --data_dir or $RUM_TF_DATA_DIR); automatic download disabled by $RUM_TF_NO_DOWNLOAD"
    )


def test_missing_data_folder(tmp_path, monkeypatch):
    with pytest.raises(files.DataError, match="does not exist"):
        files.ptb_file("test", data_dir=tmp_path / "nope")
    monkeypatch.setenv(files.ENV_DATA_DIR, str(tmp_path / "nope"))
    with pytest.raises(files.DataError, match=files.ENV_DATA_DIR):
        files.ptb_file("test")


def test_missing_en10k_qa3_train(data_dir):
    rel = "tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"
    with pytest.raises(files.DataError) as err:
        files.babi_file(3, "train", "en-10k", data_dir=data_dir)
    msg = str(err.value)
    assert msg.startswith(f"missing bAbI file {rel}: put it at {data_dir}/babi/{rel}")
    assert "\n" not in msg


def test_bad_arguments():
    assert files.babi_relpath(np.int64(7), "test", "en-10k") == ("tasks_1-20_v1-2/en-10k/qa7_counting_test.txt")
    with pytest.raises(ValueError, match=r"1\.\.20"):
        files.babi_relpath(21, "train")
    with pytest.raises(ValueError, match="split"):
        files.babi_relpath(1, "valid")
    with pytest.raises(ValueError, match="split"):
        files.ptb_file("dev")


def test_download_switch(monkeypatch):
    assert files.download_enabled(True) and not files.download_enabled(False)
    assert not files.download_enabled()  # RUM_TF_NO_DOWNLOAD=1 from the fixture
    monkeypatch.setenv(files.ENV_NO_DOWNLOAD, "0")
    assert files.download_enabled()
    monkeypatch.delenv(files.ENV_NO_DOWNLOAD)
    assert files.download_enabled()


def _make_tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tarball_is_verified_then_extracted(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    (folder / "babi").mkdir(parents=True)
    tarball = folder / "babi" / files.BABI_TARBALL
    payload = (data_dir / "babi" / QA1_TEST).read_bytes()
    _make_tarball(
        tarball,
        {
            QA1_TEST: payload,
            "tasks_1-20_v1-2/../../evil.txt": b"x",
            "tasks_1-20_v1-2/hn/qa1_single-supporting-fact_test.txt": b"x",
        },
    )
    with pytest.raises(files.DataError, match=f"checksum mismatch.*{tarball.name}"):
        files.babi_file(1, "test", data_dir=folder)
    # Our home-made tarball stands in for the real one once its sum is the expected one.
    monkeypatch.setattr(files, "BABI_TARBALL_SHA256", _sha256(tarball))
    path = files.babi_file(1, "test", data_dir=folder)
    cache = tmp_path / "cache"
    assert path == cache / "babi" / QA1_TEST and path.read_bytes() == payload
    extracted = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    assert extracted == [pathlib.Path("babi") / QA1_TEST]  # nothing else written
    with pytest.raises(files.DataError, match="has no member"):
        files.babi_file(2, "test", data_dir=folder)


def test_download_from_file_url(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "PTB_URL", (data_dir / "ptb").as_uri() + "/ptb.{split}.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    path = files.ptb_file("valid", data_dir=empty, download=True)
    assert path == tmp_path / "cache" / "ptb" / "ptb.valid.txt"
    assert _sha256(path) == files.expected_checksum("ptb/ptb.valid.txt")[1]
    # Later calls find the cached copy without downloading.
    monkeypatch.setattr(files, "PTB_URL", "file:///nonexistent/ptb.{split}.txt")
    assert files.ptb_file("valid", data_dir=empty, download=False) == path


def test_corrupt_download_not_kept(data_dir, tmp_path, monkeypatch):
    bad = tmp_path / "mirror"
    bad.mkdir()
    (bad / "ptb.test.txt").write_bytes((data_dir / "ptb" / "ptb.test.txt").read_bytes()[:-1])
    monkeypatch.setattr(files, "PTB_URL", bad.as_uri() + "/ptb.{split}.txt")
    with pytest.raises(files.DataError, match="checksum mismatch, download from file:"):
        files.ptb_file("test", download=True)
    assert not list((tmp_path / "cache").rglob("*.txt*"))
    monkeypatch.setattr(files, "PTB_URL", "file:///nonexistent/ptb.{split}.txt")
    with pytest.raises(files.DataError, match="download of file:///nonexistent.*failed"):
        files.ptb_file("test", download=True)


def test_babi_download_tries_each_url(data_dir, tmp_path, monkeypatch):
    tarball = tmp_path / "mirror" / files.BABI_TARBALL
    tarball.parent.mkdir()
    _make_tarball(tarball, {QA1_TEST: (data_dir / "babi" / QA1_TEST).read_bytes()})
    monkeypatch.setattr(files, "BABI_TARBALL_SHA256", _sha256(tarball))
    monkeypatch.setattr(files, "BABI_URLS", ("file:///nonexistent.tar.gz", tarball.as_uri()))
    path = files.babi_file(1, "test", download=True)
    assert path == tmp_path / "cache" / "babi" / QA1_TEST
    assert (tmp_path / "cache" / "babi" / files.BABI_TARBALL).is_file()
