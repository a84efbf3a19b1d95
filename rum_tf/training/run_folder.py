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

import datetime
import errno
import json
import os
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
