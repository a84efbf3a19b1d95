"""The guard of a run folder: one writer at a time (an `fcntl.flock` on `<output_dir>/.lock`, which the kernel drops
when its process dies), and the errors that end a run in one line. Standard library only: no Keras to take a lock."""

import contextlib
import datetime
import errno
import fcntl
import functools
import gc
import json
import logging as std_logging
import os
import shutil
import socket
import sys

from absl import logging

LOCK_FILE = ".lock"


class RunError(Exception):
    """The run cannot start or go on as asked; the message is one line for the user."""


class FolderBusy(RunError):
    """Another live process holds the run folder's lock."""


class Diverged(RunError):
    """The training loss, an evaluation's metric or a weight became NaN or infinite at `step`; `reason` says which."""

    def __init__(self, message, step, reason=None):
        super().__init__(message)
        self.step, self.reason = step, reason


class DiskFull(RunError):
    """A write into the run folder failed for lack of space."""


class Interrupted(KeyboardInterrupt):
    """SIGINT (or SIGTERM, which the binaries turn into it) ended the run; a KeyboardInterrupt for code awaiting one."""


def is_disk_full(error):
    """Whether `error` is a full disk or an exceeded quota (its message is read too: libraries that write
    through C, such as h5py and TensorBoard's writer, do not all set `errno`)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error).lower()
    return "no space left on device" in text or "disk quota exceeded" in text or "errno = 28" in text


def ensure_space(folder, nbytes):
    """OSError(ENOSPC) unless `folder`'s filesystem has `nbytes` free for this user. Checked before h5py
    writes: HDF5 does not fail cleanly on a full disk (tracebacks from its destructors, then a segfault)."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < nbytes:
        raise OSError(errno.ENOSPC, f"No space left on device ({free:,} bytes free, {nbytes:,} needed)", folder)


def utc_now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _holder(fd):
    """Who the lock file says holds the lock ("pid P on HOST, started TIME"), or None."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        holder = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return holder and f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"


def lock(folder):
    """Take `folder`'s exclusive lock: (the lock file's descriptor, who it named: a dead holder, or None).
    `FolderBusy` when a live process holds it; the OSError when its file cannot be written for lack of space."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    try:  # close-on-exec: the processes a run starts do not inherit its lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if is_disk_full(e):
            raise
        raise RunError(
            f"cannot open the lock file {path} ({e.strerror or e}): it must be a file this user can "
            "write; remove what is there if no run is using the folder"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd) or "a process that has not yet said which"
        os.close(fd)
        raise FolderBusy(
            f"--output_dir={folder} is in use by another run ({holder}): "
            "wait for it to end, or choose another --output_dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    previous = _holder(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now(), "argv": sys.argv}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    except OSError:
        unlock(fd)
        raise
    return fd, previous


def unlock(fd):
    """Empty the lock file (a clean end) and drop the lock."""
    with contextlib.suppress(OSError):  # the flock is released anyway; the next run then reports a takeover
        os.ftruncate(fd, 0)
    os.close(fd)  # releases the flock


def _fsync(path):
    """Flush a file (or a folder's files) that a library wrote to the disk before it is renamed."""
    for p in [os.path.join(path, n) for n in os.listdir(path)] if os.path.isdir(path) else [path]:
        if os.path.isfile(p):
            with open(p, "rb") as f:
                os.fsync(f.fileno())


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
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that infer the format from it), flushed and
    renamed onto `path` when the block succeeds; on any error it is removed. The one way a run's files are written."""
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
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def _file_log(path):
    """absl's log lines copied to `path` inside the block."""
    handler = std_logging.FileHandler(path, encoding="utf-8")
    # A full disk: the run says so in one line, not in a "--- Logging error ---" per log line.
    handler.handleError = lambda record: None
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


def _first_line(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def finished_as_asked(finished, config):
    """Whether a finished run (its results.json) is what `config` asks for: trained to --steps, or stopped by
    the same rule. One that another --stop_when (or none) ended early continues, as with a larger --steps."""
    if stopped := finished.get("stopped"):
        rule = str(config.stop_when) if config.stop_when else None
        return stopped.get("rule") == rule or (rule is None and finished.get("steps") == config.steps)
    return finished.get("steps") == config.steps


def _check_same_run(saved_flags, config, where):
    saved, current = saved_flags or {}, dict(config.flags)
    diffs = [
        f"--{name}={saved.get(name)} there, {current.get(name)} here"
        for name in sorted(set(saved) | set(current))
        if name not in config.resume_neutral and saved.get(name) != current.get(name)
    ]
    if diffs:
        raise RunError(
            f"--output_dir={config.output_dir} holds a run with other flags ({'; '.join(diffs[:3])}"
            f"{'; ...' if len(diffs) > 3 else ''}, from its {where}): repeat its flags to resume it, "
            "or choose another --output_dir"
        )


class RunFolder:
    """One run's --output_dir: its lock, files, checkpoints, progress.json and results.json, and what it holds
    (`holds`: a finished run, a checkpoint to resume, or another run). A non-chief
    worker (`worker`: its name) writes under workers/<name>/ and resumes from the chief's checkpoints."""

    def __init__(self, output_dir, worker=None):
        self.output_dir, self.chief = output_dir, worker is None
        self.path = output_dir if self.chief else os.path.join(output_dir, "workers", worker)
        self.checkpoints = self.file("checkpoints")

    def file(self, name):
        return os.path.join(self.path, name)

    def guarded(self, body, record_end):
        """`body()` holding the folder's lock, its log copied to log.txt. A failure is recorded by `record_end(status,
        message)` and raised as one line (a full disk as `DiskFull`, a KeyboardInterrupt as `Interrupted`)."""
        try:
            fd, previous = lock(self.path)
        except OSError as e:
            if not is_disk_full(e):
                raise
            raise self._disk_full(None) from None
        try:
            for where in (self.path, self.checkpoints):  # what killed writers left; nobody else writes here now
                for name in os.listdir(where) if os.path.isdir(where) else []:
                    if name.startswith(".tmp-"):
                        _remove(os.path.join(where, name))
            with _file_log(self.file("log.txt")):
                if previous:
                    logging.warning(
                        "%s: taking over the lock of a run that ended without releasing it (%s)", self.path, previous
                    )
                try:
                    return body()
                except BaseException as e:
                    status, failure = self._ended(e)
                    message = failure or (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                    with contextlib.suppress(OSError):  # a full disk: the run's error says so
                        record_end(status, _first_line(message))
                    if failure is None:  # unexpected: raised with its traceback
                        raise
                # Raised without its traceback and context, outside the except block, it no longer keeps the
                # failed frames (data iterators, event writers) alive until exit, where TensorFlow would
                # finalize them noisily; they hold reference cycles, hence the collection.
                failure.__traceback__ = failure.__context__ = failure.__cause__ = None
                gc.collect()
                raise failure
        finally:
            unlock(fd)

    def _ended(self, error):
        """(progress.json's status, the one-line error to raise, None for an unexpected one) for `error`."""
        if isinstance(error, RunError):
            return "diverged" if isinstance(error, Diverged) else "failed", error
        if isinstance(error, KeyboardInterrupt):
            how = f" by {error.args[0]}" if error.args and str(error.args[0]).startswith("SIG") else ""
            kept = self._kept("the last checkpoint (step {step}) is kept; ")
            return "interrupted", Interrupted(f"interrupted{how}: {kept}run the same command again to resume")
        return "failed", self._disk_full(error) if is_disk_full(error) else None

    def _disk_full(self, error):
        """The one-line `DiskFull` for `error` (or None), naming the last good checkpoint."""
        where = getattr(error, "filename", None)
        kept = self._kept("the last good checkpoint (step {step}) is intact; ")
        return DiskFull(
            f"no space left on the device of --output_dir={self.path}{f' (writing {where})' if where else ''}: "
            f"{kept}free space, then run the same command again to resume"
        )

    def _kept(self, kept):
        """`kept` naming the step of the newest checkpoint, "" when there is none."""
        from rum_tf.training import checkpoints  # Keras: imported for a run only

        saved = checkpoints.list_checkpoints(self.checkpoints)
        return kept.format(step=f"{saved[0][0]:,}") if saved else ""

    def latest_checkpoint(self, model=None):
        """(step, path, state) of the chief's newest checkpoint, its weights unread or restored into `model`, or None;
        RunError when checkpoint folders exist but none can be read (never taken for none, nor deleted)."""
        from rum_tf.training import checkpoints

        read = checkpoints.read_state if model is None else functools.partial(checkpoints.restore, model)
        try:
            return checkpoints.latest_state(os.path.join(self.output_dir, "checkpoints"), read)
        except checkpoints.Unreadable as e:
            if is_disk_full(e):
                raise
            changed = "nothing was changed: " if model is None else ""
            raise RunError(
                f"--output_dir={self.output_dir}: {e}; {changed}move the folder away to start over"
            ) from None

    def restore(self, model):
        """Restore the newest checkpoint that loads into `model`; its state.json."""
        if (latest := self.latest_checkpoint(model)) is None:
            raise RunError(f"--output_dir={self.output_dir}: its checkpoints vanished while the run started")
        return latest[2]

    def read_results(self):
        """The folder's results.json, None where there is none; RunError (one line) where it cannot be read."""
        from rum_tf.training import results  # it imports this module

        try:
            return results.read_results(self.output_dir)
        except ValueError as e:  # a torn or edited file (JSONDecodeError, UnicodeDecodeError)
            raise RunError(
                f"--output_dir={self.output_dir}: its results.json cannot be read ({type(e).__name__}: "
                f"{_first_line(e)}); move it away to test the run again from its last checkpoint"
            ) from None

    def holds(self, config):
        """What the folder holds for a run of `config` (a `loop.RunConfig`): (results.json of a finished run or
        None, the newest checkpoint's (step, path, state) or None), the checkpoint None where the run finished as
        `config` asks; RunError when the folder holds another run, or one that cannot be continued to `config`."""
        from rum_tf.training import callbacks

        out = config.output_dir
        finished = self.read_results()
        if finished is not None:
            _check_same_run(finished.get("flags"), config, "results.json")
            if finished.get("status") == "diverged":
                where = finished.get("diverged", {})
                raise Diverged(
                    f"--output_dir={out} holds a run that diverged at step {where.get('step', 0):,} "
                    f"({where.get('reason', 'NaN or infinity')}); it cannot be resumed: change its flags (e.g. a "
                    "lower --learning_rate) and use another --output_dir",
                    where.get("step"),
                    where.get("reason"),
                )
            if finished_as_asked(finished, config):
                return finished, None
            if config.steps < finished.get("steps", 0):
                raise RunError(
                    f"--output_dir={out} holds a run finished at {finished['steps']} steps, "
                    f"more than --steps={config.steps}"
                )
        latest = self.latest_checkpoint()
        if latest is not None:
            step, _, state = latest
            _check_same_run(state.get("flags"), config, "checkpoint")
            if step > config.steps:
                raise RunError(
                    f"--output_dir={out} holds a run already trained {step} steps, more than --steps={config.steps}"
                )
            if step % config.eval_every and not state.get(callbacks.MID_INTERVAL):
                raise RunError(
                    f"--output_dir={out} holds a checkpoint at step {step}, "
                    f"not a multiple of --eval_every={config.eval_every}"
                )
        return finished, latest

    def start(self, flagfile_text, finished, latest):
        """The chief's changes before training: a finished run continues (its results.json goes until it
        finishes again), one without a checkpoint starts clean; flags.cfg."""
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
