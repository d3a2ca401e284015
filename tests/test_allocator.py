"""The allocator during a batch job in a worker whose malloc was pinned (as Dask's nannies do):
large freed blocks are kept and reused during the job, the pinning is back after it, and the memory
the job freed is returned to the system."""

import json
import os
import platform
import subprocess
import sys

import pytest

from alfnwb.allocator import pinned_allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')

# whether a 24 MB array is served by a fresh mmap (glibc's mallinfo2: bytes in mmapped blocks),
# outside / inside / after a job; the RSS (statm) in and after a job that left 16 MB free mid-heap (less than the
# 24 MB array after it: that one cannot come from the freed blocks)
SCRIPT = r'''
import ctypes, json, os
import numpy as np
from alfnwb.allocator import job_allocator

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                               'fsmblks', 'uordblks', 'fordblks', 'keepcost')]

libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = Mallinfo2

def mmapped():
    before = libc.mallinfo2().hblkhd
    a = np.ones(3_000_000)  # 24 MB: above glibc's minimum threshold, below its dynamic maximum
    return libc.mallinfo2().hblkhd - before >= a.nbytes

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

out = {'outside': mmapped()}
with job_allocator() as changed:
    out['changed'] = changed
    r0 = rss()
    out['inside'] = mmapped()
    out['kept'] = rss() - r0  # freed at the heap's top: kept for the next array, not trimmed at once
    blocks = [np.ones(125_000) for _ in range(16)]  # 1 MB each, from the heap during the job
    keep = np.ones(1000)  # above them: the heap's top cannot shrink below it
    del blocks
    out['rss_in'] = rss()
out['rss_after'] = rss()
out['after'] = mmapped()
print(json.dumps(out))
'''


def _run(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_') and k != 'GLIBC_TUNABLES'}
    env.update(env_extra)
    r = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.splitlines()[-1])


def test_a_pinned_worker_reuses_large_blocks_during_a_job_only():
    out = _run({'MALLOC_TRIM_THRESHOLD_': '65536'})  # Dask's nanny setting
    assert out['changed'] is True
    assert out['outside'] is True  # pinned: every large array is a fresh mmap
    assert out['inside'] is False  # during the job: from the heap, where freed blocks are reused
    assert out['kept'] > 20e6  # and a freed 24 MB block stays there for the next one
    assert out['after'] is True  # the pinning is back
    assert out['rss_in'] - out['rss_after'] > 12e6  # the 16 MB the job freed went back to the system


def test_an_unpinned_or_chosen_allocator_is_left_alone():
    for env in ({}, {'MALLOC_TRIM_THRESHOLD_': '65536', 'MALLOC_MMAP_THRESHOLD_': '131072'}):
        out = _run(env)
        assert out['changed'] is False, env
        assert out['rss_after'] == out['rss_in'], env  # and no trim either


def test_dask_workers_are_pinned():
    """The premise: the workers Dask's nannies start have a pinned allocator (so run_job acts there)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host='127.0.0.1',
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pinned = list(client.run(pinned_allocator).values())
    assert pinned == [True], 'Dask no longer sets MALLOC_TRIM_THRESHOLD_ in its workers: alfnwb.allocator is moot'


FREED = r'''
import json, os
import numpy as np
from alfnwb.allocator import return_free_memory

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

blocks = [np.ones(12_500) for _ in range(400)]  # 100 kB each, below the mmap threshold: 40 MB of heap
keep = blocks[39::40]  # one in 40 stays: the heap's top cannot shrink below the last, and the rest is holes
del blocks
before = rss()
asked = return_free_memory()
print(json.dumps({'asked': asked, 'returned': before - rss()}))
'''


def test_the_heaps_free_pages_go_back_to_the_system():
    """What the writer does before it forks: the free blocks glibc keeps below the heap's top leave the RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_') and k != 'GLIBC_TUNABLES'}
    r = subprocess.run([sys.executable, '-c', FREED], env=env, capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.splitlines()[-1])
    assert out['asked'] is True
    assert out['returned'] > 30e6  # of the 39 MB freed mid-heap
