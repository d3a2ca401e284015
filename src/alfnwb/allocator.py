"""The C allocator during a batch job, in a worker whose allocator was pinned (Dask's workers).

glibc serves a ``malloc`` above its mmap threshold with fresh pages, which the kernel zeroes on first
touch, and gives memory at the top of its heap back to the system once more than the trim threshold
is free there. By default both follow the process: each large block freed raises the mmap threshold
(up to 32 MB on 64-bit) and the trim threshold (twice it), so an export's arrays of a few MB are
soon reused from the heap. Setting any of malloc's tunables turns that off; Dask's nannies start
every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``) so that
workers give memory back, which pins the mmap threshold at 128 kB and the trim threshold at 64 kB.
In such a worker nearly every array of an export is fresh pages: a core export of 3 M spikes took
6 times as many page faults and 1.6 times the kernel time as in an unpinned process.

:func:`job_allocator` sets both thresholds where glibc's own would go for the length of a job, and
after it sets them back and returns the heap's free memory to the system (``malloc_trim``), which is
what the pinning was for. It does nothing elsewhere: not on glibc, where no malloc tunable is set,
or where the user chose the mmap threshold. :func:`return_free_memory` gives the heap's free pages
back at once; the writer calls it before it forks. Uses glibc's public ``mallopt`` and
``malloc_trim`` (``malloc.h``) through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator

__all__ = ['job_allocator', 'pinned_allocator', 'return_free_memory', 'trim_threshold']

log = logging.getLogger(__name__)

#: ``mallopt`` parameters of the trim and mmap thresholds (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's default mmap and trim thresholds (``DEFAULT_MMAP_THRESHOLD_MIN``, ``DEFAULT_TRIM_THRESHOLD``).
PINNED_THRESHOLD = DEFAULT_TRIM = 128 * 1024
#: The highest mmap threshold glibc's dynamic one reaches on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``);
#: its trim threshold follows at twice the mmap threshold.
JOB_THRESHOLD = 32 * 1024 * 1024

_LOCK = threading.Lock()
_ACTIVE = 0  # jobs inside job_allocator (a Dask worker may run several at once, on threads)


def pinned_allocator(environ: dict | None = None) -> bool:
    """Whether glibc's mmap threshold was pinned at its minimum by the environment.

    True when a malloc trim threshold is set (``MALLOC_TRIM_THRESHOLD_``, as Dask does, or
    ``glibc.malloc.trim_threshold`` in ``GLIBC_TUNABLES``) and the mmap threshold is not.

    >>> pinned_allocator({'MALLOC_TRIM_THRESHOLD_': '65536'})
    True
    >>> pinned_allocator({'MALLOC_TRIM_THRESHOLD_': '65536', 'MALLOC_MMAP_THRESHOLD_': '1048576'})
    False
    >>> pinned_allocator({})
    False
    """
    env = os.environ if environ is None else environ
    return _setting(env, 'trim_threshold') is not None and _setting(env, 'mmap_threshold') is None


def trim_threshold(environ: dict | None = None) -> int:
    """The trim threshold the environment set (glibc's default if none or unreadable).

    >>> trim_threshold({'MALLOC_TRIM_THRESHOLD_': '65536'})
    65536
    >>> trim_threshold({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1024'})
    1024
    """
    value = _setting(os.environ if environ is None else environ, 'trim_threshold')
    try:
        return int(value, 0) if value is not None else DEFAULT_TRIM
    except ValueError:
        return DEFAULT_TRIM


def _setting(env, name: str) -> str | None:
    """A malloc setting from the environment: ``MALLOC_<NAME>_`` or ``glibc.malloc.<name>`` in
    ``GLIBC_TUNABLES`` (the variable if both are), None if neither is set."""
    var = f'MALLOC_{name.upper()}_'
    if var in env:
        return env[var]
    prefix = f'glibc.malloc.{name}='
    return next((t[len(prefix):] for t in env.get('GLIBC_TUNABLES', '').split(':') if t.startswith(prefix)), None)


@functools.cache
def _glibc():
    """The C library when it is glibc (the one with ``mallopt`` and ``malloc_trim``), else None."""
    import platform

    if platform.libc_ver()[0] != 'glibc':
        return None
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def return_free_memory() -> bool:
    """Give the pages of the heap's free blocks back to the system (glibc's ``malloc_trim(0)``).

    glibc keeps the blocks a process freed below the top of its heap resident for reuse. Before a
    fork this matters twice: they stay in the parent for as long as the child runs, and the child,
    reusing them, copies each page it writes to. Returned, they cost neither.

    Returns
    -------
    bool
        Whether anything was asked of the allocator (False where the C library is not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def job_allocator() -> Iterator[bool]:
    """For the length of a job, large freed blocks are reused as glibc does by default.

    After the job the trim threshold is the environment's again (:func:`trim_threshold`) and the
    mmap threshold glibc's minimum, where the pinning had left it.

    Yields whether the allocator was changed (only on glibc with a pinned threshold,
    :func:`pinned_allocator`). Nested or concurrent jobs share one change, undone when the last ends.
    """
    global _ACTIVE
    libc = _glibc() if pinned_allocator() else None
    if libc is None:
        yield False
        return
    with _LOCK:
        if _ACTIVE == 0:
            libc.mallopt(M_MMAP_THRESHOLD, JOB_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, 2 * JOB_THRESHOLD)
            log.debug('malloc: mmap threshold %d during the job (pinned by the environment)', JOB_THRESHOLD)
        _ACTIVE += 1
    try:
        yield True
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                libc.mallopt(M_MMAP_THRESHOLD, PINNED_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, trim_threshold())
                libc.malloc_trim(0)
