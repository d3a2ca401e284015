"""The collection around an export (alfnwb.collector): it frees the cycles made inside the block, walks
nothing made before it, and leaves the process's collector as it found it."""

import gc
import threading
import weakref

import pytest

from alfnwb.collector import collected_after


class Node:
    pass


def _cycle() -> weakref.ref:
    """A garbage reference cycle, and a weak reference to it."""
    node = Node()
    node.self = node
    return weakref.ref(node)


@pytest.fixture
def collector_off():
    """The automatic collector off, so that only the collections under test free anything."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()


def test_the_block_frees_its_cycles_and_walks_nothing_older(collector_off):
    old = _cycle()
    with collected_after() as froze:
        assert gc.get_freeze_count() > 0
        new = _cycle()
        assert new() is not None
    assert froze and new() is None
    assert old() is not None and gc.get_freeze_count() == 0  # unfrozen: the process's next collection frees it
    gc.collect()
    assert old() is None


def test_objects_the_process_froze_itself_stay_frozen(collector_off):
    keep = Node()
    gc.freeze()  # a server that freezes before it forks
    frozen = gc.get_freeze_count()
    with collected_after() as froze:
        new = _cycle()
    assert not froze and new() is None
    assert gc.get_freeze_count() == frozen and gc.is_tracked(keep)


def test_blocks_at_once_on_threads_share_one_freeze(collector_off):
    inside, leave, results = threading.Event(), threading.Event(), {}

    def second():
        with collected_after() as froze:
            results['froze'] = froze
            results['new'] = _cycle()
            inside.set()
            leave.wait(10)

    with collected_after() as first:
        thread = threading.Thread(target=second)
        thread.start()
        assert inside.wait(10)
        mine = _cycle()
    # the first block ended while the second runs: its cycles are freed, the freeze holds for the second
    assert first and mine() is None and gc.get_freeze_count() > 0
    leave.set()
    thread.join(10)
    assert results['froze'] is False and results['new']() is None and gc.get_freeze_count() == 0
