"""The garbage collector around an export: free what the export made, walk nothing else.

An export's objects hold its arrays in reference cycles (ONE's ``AlfBunch`` is its own ``__dict__``;
an NWBFile's containers point to their parents; the streamed analyzer's producers to their
analyzer). CPython frees a cycle only when it collects the generation the cycle lives in, and an
export's objects reach the oldest generation within the export, whose automatic collection comes
after tens of jobs in a batch worker: every job's arrays would pile up until then. So each export
collects once it is done (:func:`collected_after`).

A full collection walks every object of the process: ~0.15 s with ONE, brainbox and pynwb loaded,
at every job, in every worker (a local pool's, Dask's) and in a user's Python. For the length of an
export the objects that were there before it are frozen (``gc.freeze``, which moves them out of
the collector's generations in constant time), so that its collection, and any automatic one during
it, walks only the export's own objects (~2 ms); after the collection they are unfrozen
(``gc.unfreeze``), back into the oldest generation, and the process's collector is as the export
found it. A garbage cycle made before the export is left to the process's next full collection, as
it would have been anyway.

Nothing is frozen when the process had already frozen objects of its own (``gc.get_freeze_count``:
a user's server that freezes before forking): unfreezing would undo that; the export then collects
as a plain ``gc.collect()`` does. Exports running at once on threads (a Dask worker with several
threads) share one freeze, undone when the last one ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ['collected_after']

_LOCK = threading.Lock()
_ACTIVE = 0  # exports inside collected_after
_FROZEN = False  # the first of them froze the process's objects


@contextlib.contextmanager
def collected_after() -> Iterator[bool]:
    """Freeze the process's objects for the length of a block, collect what the block made at its
    end (also on an error), then unfreeze.

    Yields whether this process's objects were frozen (False when it had frozen objects of its own,
    or when another block running at once on a thread froze them).

    Examples
    --------
    >>> import gc, weakref
    >>> class Node:
    ...     pass
    >>> with collected_after() as froze:
    ...     node = Node(); node.self = node; made = weakref.ref(node); del node
    >>> froze, made() is None, gc.get_freeze_count()
    (True, True, 0)
    """
    global _ACTIVE, _FROZEN
    with _LOCK:
        froze = _ACTIVE == 0 and gc.get_freeze_count() == 0
        if froze:
            gc.freeze()
            _FROZEN = True
        _ACTIVE += 1
    try:
        yield froze
    finally:
        gc.collect()
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0 and _FROZEN:
                gc.unfreeze()
                _FROZEN = False
