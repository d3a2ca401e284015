"""The C allocator during a batch job, in a worker whose allocator was pinned (Dask's workers).

glibc serves a ``malloc`` above its mmap threshold with fresh pages, which the kernel zeroes on first
touch, and returns them to the system as soon as they are freed. By default the threshold follows
the process: each large block freed raises it (up to 32 MB on 64-bit), so an export's arrays of a
few MB are soon reused from the heap. Setting any of malloc's tunables turns that off and pins the
threshold at 128 kB; Dask's nannies start every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
``distributed.nanny.pre-spawn-environ``) so that workers give memory back. In such a worker every
array of an export is fresh pages: the jobs of a batch ran 25-35 % slower there than in a local
worker (``docs/performance.md``, *Batch*).

:func:`job_allocator` puts the threshold where glibc's own would go for the length of a job, and
after it sets it back and returns the heap's free memory to the system (``malloc_trim``), which is
what the pinning was for. It does nothing elsewhere: not on glibc, where no malloc tunable is set,
or where the user chose the mmap threshold. Uses glibc's public ``mallopt`` and ``malloc_trim``
(``malloc.h``) through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator

__all__ = ['job_allocator', 'pinned_allocator']

log = logging.getLogger(__name__)

#: ``mallopt`` parameter of the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's default mmap threshold (``DEFAULT_MMAP_THRESHOLD_MIN``), where a pinned one stays.
PINNED_THRESHOLD = 128 * 1024
#: The highest threshold glibc's dynamic one reaches on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``).
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
    tunables = env.get('GLIBC_TUNABLES', '')
    trim = 'MALLOC_TRIM_THRESHOLD_' in env or 'glibc.malloc.trim_threshold' in tunables
    mmap_chosen = 'MALLOC_MMAP_THRESHOLD_' in env or 'glibc.malloc.mmap_threshold' in tunables
    return trim and not mmap_chosen


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


@contextlib.contextmanager
def job_allocator() -> Iterator[bool]:
    """For the length of a job, large freed blocks are reused as glibc does by default.

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
            log.debug('malloc: mmap threshold %d during the job (pinned by the environment)', JOB_THRESHOLD)
        _ACTIVE += 1
    try:
        yield True
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                libc.mallopt(M_MMAP_THRESHOLD, PINNED_THRESHOLD)
                libc.malloc_trim(0)
