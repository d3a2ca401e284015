"""Locks that exclude what they should: one writer per output file (whatever its temporary folder),
one batch per dandiset, each batch cleaning only what ended runs left; clear errors where a file
system has no locks; nothing needs fcntl to import."""

import errno
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from alfnwb.errors import OutputError
from alfnwb.locks import exclusive_lock

from test_reliability import Hooked

HOLD = """
import sys, time
from alfnwb.locks import exclusive_lock
with exclusive_lock(sys.argv[1], 'thing', 'held by pid {pid}'):
    print('held', flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope='module')
def lcache(tmp_path_factory):
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('lockcache'), seed=21, sessions=1, n_units=6, duration=20.0)


def _planned(cache):
    from one.api import One

    from alfnwb.batch import plan_jobs

    return plan_jobs(One(cache_dir=cache.cache_dir, mode='local'), all_insertions=True)


def test_two_processes_exclude_each_other_and_a_dead_holder_frees_the_lock(tmp_path):
    lock = tmp_path / '.thing.lock'
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(OutputError, match=rf'^thing: held by pid {holder.pid}$'):
            with exclusive_lock(lock, 'thing', 'held by pid {pid}'):
                pass
    finally:
        holder.kill()  # no clean-up of its own: the operating system releases the lock
        holder.wait()
    assert lock.exists()  # the dead holder's file stays, unlocked
    with exclusive_lock(lock, 'thing', 'held by pid {pid}'):
        assert lock.read_text() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_the_output_lock_is_beside_the_output_whatever_the_temporary_folder(tmp_path):
    from alfnwb.nwb.io import lock_path, output_lock

    out, other = tmp_path / 'out' / 'x.nwb', tmp_path / 'tmp'
    out.parent.mkdir()
    other.mkdir()
    with output_lock(out, tmp_dir=other):
        assert lock_path(out) == out.parent / '.x.nwb.lock' and lock_path(out).exists()
        assert list(other.iterdir()) == []
        with pytest.raises(OutputError, match=rf'another alfnwb process \(pid {os.getpid()}\) is writing it'):
            with output_lock(out):  # another temporary folder (the command line's default), same lock
                pass
    assert list(out.parent.iterdir()) == []


def test_a_cli_export_and_a_batch_writing_the_same_file_exclude_each_other(lcache, tmp_path, run_main):
    """Two real processes each way: the command line holds the file while a batch wants it, then a
    batch holds it while the command line wants it."""
    from alfnwb.batch import run_batch
    from alfnwb.nwb.io import partial_output

    job = _planned(lcache)[0]
    ds = tmp_path / 'ds'
    out = ds / job.relpath
    out.parent.mkdir(parents=True)
    cli = Hooked(tmp_path / 'hook', 'hold', '--quiet', 'export', '--pid', job.pid, '--cache-dir',
                 str(lcache.cache_dir), '-o', str(out))
    try:
        _, partial = cli.writing()
        report = run_batch([job], ds, {'cache_dir': str(lcache.cache_dir)}, validate=False, progress=False)
        assert report.failed == 1
        assert report.failures[job.key] == (f'output {out}: another alfnwb process (pid {cli.proc.pid}) is writing '
                                            'it; wait for it to finish')
        assert partial.exists()  # the batch's clean-up left the running export's partial file alone
    finally:
        code, _, err = cli.finish()
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]

    batch = Hooked(tmp_path / 'hook2', 'hold', '--quiet', 'batch', '--all', '--cache-dir', str(lcache.cache_dir),
                   '--dandiset-dir', str(ds), '--no-validate')
    try:
        _, partial = batch.writing()  # in the batch's own folder: its output is named after it
        target = next(ds.glob(f'sub-*/{partial_output(partial).name}'))
        pid = next(j.pid for j in _planned(lcache) if ds / j.relpath == target)
        r = run_main('--quiet', 'export', '--pid', pid, '--cache-dir', str(lcache.cache_dir), '-o', str(target),
                     '--overwrite')
        assert r.returncode == 7
        assert r.stderr.strip().splitlines()[-1] == (f'alfnwb: error: output {target}: another alfnwb process '
                                                     f'(pid {batch.proc.pid}) is writing it; wait for it to finish')
    finally:
        code, _, err = batch.finish()
    assert code == 0, err


def test_a_second_batch_on_the_same_dandiset_is_refused_and_touches_nothing(lcache, tmp_path, run_main):
    ds = tmp_path / 'ds'
    first = Hooked(tmp_path / 'hook', 'hold', '--quiet', 'batch', '--all', '--cache-dir', str(lcache.cache_dir),
                   '--dandiset-dir', str(ds), '--no-validate')
    try:
        _, partial = first.writing()
        assert partial.parent.parent == ds / '.alfnwb' / 'tmp'
        assert partial.parent.name.startswith(f'run-{first.proc.pid}-')  # whose partial file it is
        t0 = time.monotonic()
        r = run_main('--quiet', 'batch', '--all', '--cache-dir', str(lcache.cache_dir), '--dandiset-dir', str(ds))
        assert r.returncode == 7 and time.monotonic() - t0 < 60
        assert r.stderr.strip().splitlines() == [f'alfnwb: error: dandiset {ds}: another alfnwb batch '
                                                 f'(pid {first.proc.pid}) is running on it; wait for it to finish']
        assert partial.exists()  # the refused batch removed nothing of the running one
    finally:
        code, out, err = first.finish()
    assert code == 0, err
    assert '2 exported, 0 already done (skipped), 0 failed' in out
    m = pd.read_parquet(ds / '.alfnwb' / 'manifest.parquet')
    assert sorted(m['status']) == ['done', 'done']
    assert not (ds / '.alfnwb' / 'tmp').exists() and not (ds / '.alfnwb' / 'batch.lock').exists()
    assert not [p for p in ds.rglob('*') if p.name.startswith('.') and '.alfnwb' not in p.parts]


def test_a_batch_cleans_what_ended_runs_left_and_nothing_else(tmp_path):
    """Leftovers of killed runs go; the partial file and lock of an export running now stay."""
    from alfnwb.batch import run_batch
    from alfnwb.nwb.io import lock_path

    ds = tmp_path / 'ds'
    sub = ds / 'sub-a'
    stale = [ds / '.alfnwb' / 'tmp' / 'run-999999-dead' / '.sub-a_x.abcd1234.partial.nwb',  # a killed batch's
             ds / '.alfnwb' / 'tmp' / '.sub-a_y.abcd1234.partial.nwb',  # an older layout's
             sub / '.sub-a_z.abcd1234.partial.nwb', sub / '.sub-a_z.nwb.lock']  # a killed export's
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b'left')
    live = sub / 'sub-a_live.nwb'
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(lock_path(live))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        live_partial = sub / '.sub-a_live.wxyz5678.partial.nwb'
        live_partial.write_bytes(b'being written')
        report = run_batch([], ds, {'cache_dir': str(tmp_path)}, validate=False, progress=False)
        assert report.ok
        assert [p for p in stale if p.exists()] == []
        assert live_partial.exists() and lock_path(live).exists()
    finally:
        holder.kill()
        holder.wait()
    assert not (ds / '.alfnwb' / 'tmp').exists()


def test_a_file_system_without_locks_is_a_one_line_error(lcache, tmp_path, monkeypatch):
    """flock failing with ENOLCK, as on some network file systems: export and batch say so, leave nothing."""
    import fcntl

    from one.api import One

    from alfnwb.batch import run_batch
    from alfnwb.export import export

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, 'flock', no_locks)
    out = tmp_path / 'out' / 'x.nwb'
    out.parent.mkdir()
    with pytest.raises(OutputError) as e:
        export(One(cache_dir=lcache.cache_dir, mode='local'), out, pid=lcache.sessions[0].probes[0].pid)
    assert str(e.value) == (f'output {out}: the file system of {out.parent} does not support file locks '
                            f'({os.strerror(errno.ENOLCK)}); use a local disk')
    assert list(out.parent.iterdir()) == []
    ds = tmp_path / 'ds'
    with pytest.raises(OutputError, match=rf'^dandiset {ds}: the file system of {ds / ".alfnwb"} does not support '
                                          'file locks'):
        run_batch(_planned(lcache), ds, {'cache_dir': str(lcache.cache_dir)}, validate=False, progress=False)
    assert list((ds / '.alfnwb').iterdir()) == []


def test_importing_alfnwb_needs_no_fcntl(tmp_path):
    """Windows has no fcntl: the package and its lock module import without it."""
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import alfnwb, alfnwb.locks, alfnwb.nwb.io, alfnwb.batch, alfnwb.export\n"
            "try:\n"
            "    import fcntl\n"
            "except ImportError:\n"
            "    print('ok')\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr
