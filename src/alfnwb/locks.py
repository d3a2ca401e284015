"""Exclusive advisory file locks that work on every platform and say who holds them.

A lock is a small file holding its holder's pid, locked with ``fcntl.flock`` on POSIX and
``msvcrt.locking`` on Windows. Both are released by the operating system when the holder dies
(``kill -9`` included), so a lock is never left stale: a leftover lock file is free and is reused.
The platform modules are imported inside the functions so that ``import alfnwb`` works everywhere.

Who uses which lock (see ``docs/reliability.md``):

- :func:`alfnwb.nwb.io.output_lock`: one per output file, ``.<name>.nwb.lock`` beside it, whatever
  folder the temporary file is written to, so that every writer of one path excludes the others;
- :func:`alfnwb.batch.run_batch`: one per dandiset, ``<dandiset>/.alfnwb/batch.lock``;
- :func:`alfnwb.loading.load_trials`: one per ONE cache and session, waited for, in the temporary
  folder, so that two workers exporting probes of one session do not download its trials at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

__all__ = ['exclusive_lock', 'waiting_lock', 'NO_LOCKS_ERRNOS']

#: errno values of a file system without locks (some network or FUSE file systems).
NO_LOCKS_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP)})

# msvcrt locks a byte range, and a locked range cannot be read by anyone else: the lock is on a byte
# far beyond the pid written at the start of the file, so that a refused process can still read it.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting: True if locked, False if another process holds it.

    Raises
    ------
    OSError
        Anything else, e.g. a file system without locks (errno in :data:`NO_LOCKS_ERRNOS`).
    """
    if os.name == 'nt':
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EDEADLK):  # the range is locked by another process
                return False
            raise
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    """Release the lock on ``fd`` (closing the file releases it too; this is for Windows' byte range)."""
    if os.name == 'nt':
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file ('?' while it has not written it yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors='replace').strip() or '?'
    except OSError:
        return '?'


def _open(lock_path: Path, subject: str) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f'{subject}: cannot create the lock file {lock_path} ({e.strerror or e})') from None


def _acquire(lock_path: Path, subject: str, busy: str | None) -> int:
    """Open and lock ``lock_path``; the file descriptor that holds the lock.

    ``busy`` is the message when another process holds it, with ``{pid}`` for the holder's pid
    (None: return -1 instead of raising).
    """
    while True:
        fd = _open(lock_path, subject)
        try:
            locked = _try_lock(fd)
        except OSError as e:
            os.close(fd)
            if e.errno in NO_LOCKS_ERRNOS:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)  # nobody can hold a lock on this file system: leave nothing behind
                raise OutputError(f'{subject}: the file system of {lock_path.parent} does not support file locks '
                                  f'({e.strerror or e}); use a local disk') from None
            raise OutputError(f'{subject}: cannot lock {lock_path} ({e.strerror or e})') from None
        if not locked:
            holder = _holder(fd)
            os.close(fd)
            if busy is None:
                return -1
            raise OutputError(f'{subject}: {busy.format(pid=holder)}')
        # the previous holder unlinks the file when it releases it: if that happened between our open
        # and our lock, we hold a lock on a file nobody else will ever open; start again
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_path: str | Path, subject: str, busy: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``lock_path`` inside the block; fail at once if another process holds it.

    Parameters
    ----------
    lock_path : str or pathlib.Path
        The lock file (created, and removed when released).
    subject : str
        What the lock protects, as error messages start: ``'output x.nwb'``, ``'dandiset d'``.
    busy : str
        The rest of the message when the lock is held elsewhere; ``{pid}`` is replaced by the holder's pid.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    alfnwb.errors.OutputError
        One line: held by another process (with its pid), a file system without locks, or a folder
        where the lock file cannot be created.
    """
    lock_path = Path(lock_path)
    with _holding(_acquire(lock_path, subject, busy), lock_path):
        yield lock_path


@contextlib.contextmanager
def waiting_lock(lock_path: str | Path, subject: str, timeout: float = 900.0) -> Iterator[Path]:
    """Like :func:`exclusive_lock`, but wait while another process holds the lock (up to ``timeout`` s).

    For work that must not run twice at once but may run one after the other: downloading files
    that two workers both need (a session's trials, for each of its probes).
    """
    lock_path = Path(lock_path)
    deadline = time.monotonic() + timeout
    while (fd := _acquire(lock_path, subject, None)) < 0:
        if time.monotonic() > deadline:
            raise OutputError(f'{subject}: still locked by another process after {timeout:.0f} s ({lock_path})')
        time.sleep(0.05)
    with _holding(fd, lock_path):
        yield lock_path


@contextlib.contextmanager
def _holding(fd: int, lock_path: Path) -> Iterator[None]:
    """Inside the block the lock held on ``fd`` names this process; released (and its file removed) after."""
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        _release(fd, lock_path)


def _release(fd: int, lock_path: Path) -> None:
    """Remove the lock file and release the lock (POSIX: unlinked while still held, so that nobody
    locks a file that is about to disappear; Windows cannot remove an open file: closed first)."""
    if os.name == 'nt':
        _unlock(fd)
        os.close(fd)
        with contextlib.suppress(OSError):
            lock_path.unlink()
        return
    with contextlib.suppress(OSError):
        lock_path.unlink()
    os.close(fd)
