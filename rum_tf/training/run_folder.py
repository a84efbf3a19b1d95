"""The guard of a run folder: one writer at a time, and the errors that end a run in one line.

A run takes an exclusive lock on `<output_dir>/.lock` (`fcntl.flock`) before it reads,
deletes or writes anything there, and holds it until it ends. A second writer of the same
folder, whatever its flags, gets `FolderBusy` naming the holder's pid, host and start time.
The kernel drops a flock when its process dies, however it dies, so a lock left by a killed
run never blocks: the next run takes it and says whose it was (the file still names the dead
holder; a clean exit empties it). Each folder has its own lock, so a bAbI parent folder and
its sub-run folders do not wait on each other; the lock file is opened close-on-exec, so
processes a run starts do not inherit it.

The module uses the standard library only (and absl's logging), so that a supervisor can
take or test a lock without importing Keras.
"""

import contextlib
import datetime
import errno
import gc
import json
import logging as std_logging
import os
import shutil
import socket
import sys

from absl import logging

try:
    import fcntl
except ImportError:  # not POSIX: runs are not guarded (warned once per run)
    fcntl = None

LOCK_FILE = ".lock"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class RunError(Exception):
    """The run cannot start or go on as asked; the message is one line for the user."""


class FolderBusy(RunError):
    """Another live process holds the run folder's lock."""


class Diverged(RunError):
    """The training loss (or an evaluation's metric, or a weight) became NaN or infinite.

    Attributes:
      step: the step where it was seen.
      reason: what was not finite, e.g. "the training loss is nan".
    """

    def __init__(self, message, step, reason=None):
        super().__init__(message)
        self.step = step
        self.reason = reason


class DiskFull(RunError):
    """A write into the run folder failed for lack of space."""


def is_disk_full(error):
    """Whether `error` (any exception) is a full disk or an exceeded quota.

    Libraries that write through C (h5py, TensorBoard's writer) do not all set `errno`, so
    their message is read too.
    """
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    text = str(error).lower()
    return "no space left on device" in text or "disk quota exceeded" in text or "errno = 28" in text


def disk_full_error(folder, error, last_checkpoint=None):
    """The one-line `DiskFull` for `error` (or None) raised while writing into `folder`."""
    where = getattr(error, "filename", None) if error is not None else None
    kept = f"the last good checkpoint (step {last_checkpoint:,}) is intact; " if last_checkpoint is not None else ""
    return DiskFull(
        f"no space left on the device of --output_dir={folder}"
        f"{f' (writing {where})' if where else ''}: {kept}free space, then run the same command "
        "again to resume"
    )


def ensure_space(folder, nbytes):
    """OSError(ENOSPC) unless `folder`'s filesystem has `nbytes` free (for the calling user).

    Checked before h5py writes a file: HDF5 does not fail cleanly on a full disk (dozens of
    tracebacks from its destructors, then a segmentation fault), so a write that would not fit is
    not started.
    """
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < nbytes:
        raise OSError(errno.ENOSPC, f"No space left on device ({free:,} bytes free, {nbytes:,} needed)", folder)


def _holder_text(holder):
    if not holder:
        return "a process that has not yet said which"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"


class FolderLock:
    """The exclusive lock of one run folder; a context manager.

    Args:
      folder: the run folder (created if missing).
    """

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd = None
        self.previous = None  # what the lock file said when taken: a dead holder's record, or None

    def _read(self, fd):
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def acquire(self):
        """Take the lock, or raise `FolderBusy`."""
        os.makedirs(self.folder, exist_ok=True)
        if fcntl is None:
            logging.warning("no fcntl on this platform: nothing stops a second writer of %s", self.folder)
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(self.folder, e) from None
            raise RunError(
                f"cannot open the lock file {self.path} ({e.strerror or e}): it must be a file this user can "
                "write; remove what is there if no run is using the folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise FolderBusy(
                f"--output_dir={self.folder} is in use by another run ({_holder_text(holder)}): "
                "wait for it to end, or choose another --output_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.previous = self._read(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        except OSError as e:
            self.release()
            if is_disk_full(e):
                raise disk_full_error(self.folder, e) from None
            raise
        return self

    def report_takeover(self):
        """Log whose lock was taken over, if the last holder died holding it."""
        if self.previous:
            logging.warning(
                "%s: taking over the lock of a run that ended without releasing it (%s)",
                self.folder,
                _holder_text(self.previous),
            )

    def release(self):
        """Empty the lock file (a clean end) and drop the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the flock is released anyway; the next run then reports a takeover
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _fsync(path):
    """Flush a file (or a folder's files) that a library wrote to the disk before it is renamed."""
    paths = [os.path.join(path, n) for n in os.listdir(path)] if os.path.isdir(path) else [path]
    for p in paths:
        if os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def temporary_name(path, suffix=""):
    """The hidden name beside `path` that `atomic_path` writes first (".tmp-" + name + pid)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".tmp-{name}-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path`; when the block succeeds it is flushed and renamed onto `path`.

    The one way files of a run are written (results, flags, curve, progress, plots, the model,
    checkpoint folders). On any error (a full disk included) the temporary file is removed and
    `path` keeps its earlier content. A folder replaces an earlier folder of the same name.

    Args:
      path: the file or folder to write.
      suffix: ending of the temporary name, for writers that infer the format from it (".keras", ".png").
    """
    tmp = temporary_name(path, suffix)
    _remove(tmp)
    try:
        yield tmp
        _fsync(tmp)
        if os.path.isdir(tmp) and os.path.isdir(path):  # os.replace cannot replace a non-empty folder
            old = temporary_name(path, "-old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write `text` to `path` so that a reader (or a killed writer) never sees half a file."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def remove_temporary_files(folder):
    """Delete what killed writers left in `folder` and its checkpoints (".tmp-*"); call it holding the
    folder's lock."""
    for where in (folder, os.path.join(folder, "checkpoints")):
        if os.path.isdir(where):
            for name in os.listdir(where):
                if name.startswith(".tmp-"):
                    _remove(os.path.join(where, name))


class Interrupted(KeyboardInterrupt):
    """SIGINT (or SIGTERM, which the binaries turn into it) ended the run; the message is one line for the
    user. A KeyboardInterrupt still, so that code waiting for one sees it."""


class _QuietFileHandler(std_logging.FileHandler):
    """A log file that stops quietly when it cannot be written (a full disk): the run reports that itself,
    in one line, instead of a "--- Logging error ---" traceback per log line."""

    def handleError(self, record):
        self.failed = True


@contextlib.contextmanager
def _file_log(path):
    """absl's log lines copied to `path` inside the block."""
    handler = _QuietFileHandler(path, encoding="utf-8")
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(std_logging.INFO)
    logger = logging.get_absl_logger()
    level = logger.level
    if not logger.isEnabledFor(std_logging.INFO):  # absl logs warnings only until flags are parsed
        logger.setLevel(std_logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _detached(error):
    """`error` without its traceback and context: raised again, it no longer keeps the failed frames (the
    training's data iterators, open event writers) alive until the interpreter exits, where TensorFlow
    would finalize them with noise on stderr."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _first_line(error):
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


class RunFolder:
    """One run's --output_dir: its lock, its files (all written atomically), its checkpoints, progress.json
    and results.json. A non-chief worker of a multi-worker run writes under workers/<name>/ and resumes
    from the chief's checkpoints.

    Args:
      output_dir: the run's --output_dir.
      worker: None for the chief (or a single process), else the worker's name.
    """

    def __init__(self, output_dir, worker=None):
        self.output_dir = output_dir
        self.chief = worker is None
        self.path = output_dir if self.chief else os.path.join(output_dir, "workers", worker)

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def checkpoints(self):
        return self.file("checkpoints")

    @property
    def resume_checkpoints(self):
        return os.path.join(self.output_dir, "checkpoints")

    def last_checkpoint_step(self):
        from rum_tf.training import checkpoints

        saved = checkpoints.list_checkpoints(self.checkpoints)
        return saved[0][0] if saved else None

    def guarded(self, body, record_end):
        """`body()` holding the folder's lock, with the log copied to its log.txt.

        The lock is taken before anything in the folder is read, deleted or written. A failure is
        recorded by `record_end(status, message)` ("diverged", "failed" or "interrupted") and raised
        as one line: a full disk becomes a `DiskFull` naming the last good checkpoint, a
        KeyboardInterrupt an `Interrupted`.
        """
        try:
            lock = FolderLock(self.path).acquire()
        except DiskFull:
            lock = None  # raised below, with the folder's last checkpoint, outside the handler
        if lock is None:
            raise self._disk_full(None)
        try:
            remove_temporary_files(self.path)  # what killed writers left; nobody else writes here now
            with _file_log(self.file("log.txt")):
                lock.report_takeover()
                try:
                    return body()
                except Diverged as e:
                    status, failure = "diverged", _detached(e)
                except RunError as e:
                    status, failure = "failed", _detached(e)
                except KeyboardInterrupt as e:
                    how = f" by {e.args[0]}" if e.args and str(e.args[0]).startswith("SIG") else ""
                    step = self.last_checkpoint_step()
                    kept = f"the last checkpoint (step {step:,}) is kept; " if step is not None else ""
                    status, failure = (
                        "interrupted",
                        Interrupted(f"interrupted{how}: {kept}run the same command again to resume"),
                    )
                except BaseException as e:
                    if not is_disk_full(e):
                        _record(record_end, "failed", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                        raise
                    status, failure = "failed", _detached(self._disk_full(e))
                _record(record_end, status, failure)
                gc.collect()  # the failed frames hold reference cycles
                raise failure  # outside the except blocks: see _detached
        finally:
            lock.release()

    def _disk_full(self, error):
        return disk_full_error(self.path, error, self.last_checkpoint_step())

    def read_results(self):
        """The folder's results.json, None where there is none; RunError (one line) where it cannot be read."""
        from rum_tf.training import results

        try:
            return results.read_results(self.output_dir)
        except ValueError as e:  # a torn or edited file (JSONDecodeError, UnicodeDecodeError)
            raise RunError(
                f"--output_dir={self.output_dir}: its results.json cannot be read ({type(e).__name__}: "
                f"{_first_line(e)}); move it away to test the run again from its last checkpoint"
            ) from None

    def latest_checkpoint(self):
        """(step, path, state) of the newest checkpoint to resume from, or None; RunError when checkpoint
        folders exist but none can be read (they are never taken for none, nor deleted)."""
        from rum_tf.training import checkpoints

        try:
            return checkpoints.latest_state(self.resume_checkpoints)
        except checkpoints.Unreadable as e:
            raise RunError(
                f"--output_dir={self.output_dir}: {e}; nothing was changed: move the folder away to start over"
            ) from None

    def restore(self, model):
        """Restore the newest readable checkpoint into `model`; its state.json."""
        from rum_tf.training import checkpoints

        try:
            state = checkpoints.restore_latest(model, self.resume_checkpoints)
        except (OSError, ValueError, KeyError) as e:
            if is_disk_full(e):
                raise
            raise RunError(
                f"--output_dir={self.output_dir}: no checkpoint can be read (the last error: {type(e).__name__}: "
                f"{_first_line(e)}); move the folder away to start over"
            ) from None
        if state is None:
            raise RunError(f"--output_dir={self.output_dir}: its checkpoints vanished while the run started")
        return state

    def start(self, flagfile_text, finished, latest):
        """The chief's changes before training: a finished run continues (its results.json goes until it
        finishes again), a new run (or one killed before its first checkpoint) starts clean; flags.cfg."""
        if finished is not None:
            logging.info(
                "continuing the run that finished at step %s; its results.json is rewritten at the end",
                f"{finished.get('steps', 0):,}",
            )
            os.remove(self.file("results.json"))
        if latest is None:
            for leftover in ("curve.csv", "tensorboard", "checkpoints"):
                _remove(self.file(leftover))
        atomic_write_text(self.file("flags.cfg"), flagfile_text)


def _record(record_end, status, message):
    try:
        record_end(status, _first_line(message))
    except OSError:
        pass  # a full disk: the run's error says so
