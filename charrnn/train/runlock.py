"""The run-directory lock: one trainer per run directory, and a dead trainer's lock taken over.

`lock(run_dir)` holds run_dir/train.lock for a training session; the file holds the trainer's pid
and is deleted when the session ends. Where the system has flock (Linux, macOS) the trainer also
holds an exclusive flock on the file while it runs. The kernel drops it when the process dies,
however it dies (Ctrl-C, kill -9, a crash), so "is the lock held?" is one atomic test: of two
trainers that find a dead trainer's lock at the same moment exactly one takes it. (Deleting a
stale file and creating a new one, both could: the second would delete the first one's lock.)
A file whose recorded pid is alive is refused as well, so a trainer that could not flock is
respected. Without flock (Windows), O_EXCL creation and that pid check do the work alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import CharrnnError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

NAME = "train.lock"


@contextmanager
def lock(run_dir: Path):
    """Hold run_dir/train.lock for the session (see the module docstring). Raises CharrnnError
    when another trainer holds it or it cannot be created."""
    path = Path(run_dir) / NAME
    try:
        fd = _acquire(path, run_dir) if fcntl else _acquire_excl(path, run_dir)
    except OSError as e:  # not writable, not a directory
        raise CharrnnError(f"cannot create {path}: {e.strerror or e}") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError as e:  # disk full
        path.unlink(missing_ok=True)
        os.close(fd)
        raise CharrnnError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before close: no one can lock the file we still hold
        os.close(fd)


def _in_use(run_dir: Path, pid: int) -> CharrnnError:
    return CharrnnError(f"{run_dir} is in use by another trainer (pid {pid}); wait for it or "
                        f"choose another --out (delete {run_dir / NAME} if no trainer "
                        f"is running)")


def _pid_in(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return 0


def _acquire(path: Path, run_dir: Path) -> int:
    """An fd of `path` on which we hold the flock (see `lock`)."""
    for _ in range(10):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live trainer holds it
            pid = _pid_in(fd)
            os.close(fd)
            raise _in_use(run_dir, pid) from None
        except OSError:  # no flock on this file system: the pid check below must do
            pass
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # its owner finished and deleted it as we opened it: start again
            os.close(fd)
            continue
        pid = _pid_in(fd)
        # a trainer without flock (or, rarely, a reused pid); our own pid is a reused one: in a
        # container a trainer killed as pid 1 leaves pid 1 behind for the next one
        if pid and pid != os.getpid() and _alive(pid):
            os.close(fd)
            raise _in_use(run_dir, pid)
        return fd  # new, or left by a dead trainer: ours now
    raise CharrnnError(f"cannot lock {run_dir}: {path} keeps changing")


def _acquire_excl(path: Path, run_dir: Path) -> int:
    for _ in range(2):
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise _in_use(run_dir, pid) from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
    raise CharrnnError(f"cannot lock {run_dir}: {path} keeps reappearing")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
