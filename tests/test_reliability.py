"""Bad input gets a clear error; nothing lost, nothing partial; nothing written outside where it belongs."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alfnwb.errors import InvalidDataError, NotFoundError, OutputError
from alfnwb.export import export


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('relcache'), seed=13, sessions=1, n_units=6, duration=20.0)


@pytest.fixture
def cache(base, tmp_path):
    """A private copy of the base cache, to break."""
    shutil.copytree(base.cache_dir, tmp_path / 'cache')
    return tmp_path / 'cache'


def _folder(base, cache, probe_index):
    s = base.sessions[0]
    coll = 'alf/probe00/iblsorter/#2024-05-06#' if probe_index == 0 else 'alf/probe01/pykilosort'
    return cache / s.path.relative_to(base.cache_dir) / coll, coll


def _npy(folder, name, fn):
    f = folder / f'{name}.npy'
    np.save(f, fn(np.load(f)))


def _truncate(folder, name):
    f = folder / name
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


class _Payload:
    """Unpickling this would create a marker file: it must never happen."""

    marker = None

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickled(folder, name, marker):
    _Payload.marker = str(marker)
    np.save(folder / f'{name}.npy', np.array([_Payload()], dtype=object), allow_pickle=True)


BREAKS = {
    # name: (probe, break(folder, tmp_path), expected message after "insertion <pid>: ")
    'truncated npy': (1, lambda d, t: _truncate(d, 'spikes.times.npy'), r'spikes\.times\.npy: truncated or corrupt'),
    'corrupt pqt': (1, lambda d, t: (d / 'clusters.metrics.pqt').write_bytes(b'PAR1 garbage'),
                    r'clusters\.metrics\.pqt: truncated or corrupt'),
    'pickled npy': (1, lambda d, t: _pickled(d, 'spikes.amps', t / 'pwned'), r'spikes\.amps\.npy: holds Python objects'),
    'lengths differ': (1, lambda d, t: _npy(d, 'spikes.clusters', lambda a: a[:-3]),
                       r'spikes\.clusters has \d+ rows, spikes\.times has'),
    'cluster beyond': (1, lambda d, t: _npy(d, 'clusters.channels', lambda a: a[:2]),
                       r'spikes\.clusters refers to cluster \d+ but clusters\.channels has 2 rows'),
    'NaN time': (1, lambda d, t: _npy(d, 'spikes.times', lambda a: np.r_[a[:-1], np.nan]), r'NaN or infinite'),
    'inf time': (1, lambda d, t: _npy(d, 'spikes.times', lambda a: np.r_[a[:-1], np.inf]), r'NaN or infinite'),
    'unsorted': (1, lambda d, t: _npy(d, 'spikes.times', lambda a: a[::-1].copy()), r'spikes\.times is not sorted'),
    'channels lengths': (1, lambda d, t: _npy(d, 'channels.rawInd', lambda a: a[:100]),
                         r'channels\.localCoordinates has 384 rows, channels\.rawInd has 100'),
    'channel beyond': (1, lambda d, t: _npy(d, 'clusters.channels', lambda a: a + 1000),
                       r'clusters\.channels refers to channel \d+ but there are 384 channels'),
    'unknown atlas id': (0, lambda d, t: _npy(d, 'channels.brainLocationIds_ccf_2017',
                                              lambda a: np.r_[a[:-1], 123456789]), r'atlas ids unknown.*123456789'),
}


@pytest.mark.parametrize('case', list(BREAKS))
def test_bad_alf_is_a_one_line_error_naming_insertion_and_dataset(base, cache, tmp_path, case):
    from one.api import One

    probe_index, breaker, message = BREAKS[case]
    folder, coll = _folder(base, cache, probe_index)
    breaker(folder, tmp_path)
    pid = base.sessions[0].probes[probe_index].pid
    out = tmp_path / 'out' / 'x.nwb'
    out.parent.mkdir()
    with pytest.raises(InvalidDataError, match=rf'^insertion {pid}: .*{message}') as e:
        export(One(cache_dir=cache, mode='local'), out, pid=pid)
    assert '\n' not in str(e.value)
    assert list(out.parent.iterdir()) == []
    assert not (tmp_path / 'pwned').exists()
    # the command line: the same line, exit 5, no traceback
    r = subprocess.run([sys.executable, '-m', 'alfnwb.cli', 'export', '--pid', pid, '--cache-dir', str(cache),
                        '-o', str(out)], capture_output=True, text=True)
    assert r.returncode == 5 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f'alfnwb: error: insertion {pid}: ')


def test_empty_probe_is_valid_and_exports(base, cache, tmp_path):
    from one.api import One

    from alfnwb.readback import read_alf, read_sorting_analyzer

    folder, _ = _folder(base, cache, 1)
    for name in ('times', 'samples', 'amps', 'depths', 'clusters', 'templates'):
        _npy(folder, f'spikes.{name}', lambda a: a[:0])
    pid = base.sessions[0].probes[1].pid
    r = export(One(cache_dir=cache, mode='local'), tmp_path / 'empty.nwb', pid=pid)
    spikes, clusters, _ = read_alf(r.path)
    assert spikes['times'].size == 0 and clusters['channels'].size == r.n_units > 0
    sa = read_sorting_analyzer(r.path)
    assert sa.sorting.to_spike_vector().size == 0
    assert sa.get_extension('correlograms').get_data()[0].sum() == 0


def test_not_found_and_unwritable(base, cache, tmp_path):
    from one.api import One

    one = One(cache_dir=cache, mode='local')
    with pytest.raises(NotFoundError, match='not in the cache|not found|no insertion'):
        export(one, tmp_path / 'x.nwb', pid='00000000-0000-4000-8000-000000000000')
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    mounted = False
    if os.access(ro, os.W_OK):  # root writes anywhere: a read-only file system stops it
        mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(ro)],
                                 capture_output=True).returncode == 0
        assert mounted, 'cannot make a read-only folder here'
    try:
        with pytest.raises(OutputError, match=f'output {ro / "x.nwb"}: folder {ro} is not writable'):
            export(one, ro / 'x.nwb', pid=base.sessions[0].probes[1].pid)
    finally:
        if mounted:
            subprocess.run(['umount', str(ro)])
        ro.chmod(0o755)


def test_second_writer_of_the_same_output_is_refused(base, tmp_path):
    from alfnwb.nwb.io import output_lock

    out = tmp_path / 'x.nwb'
    pid = base.sessions[0].probes[1].pid
    with output_lock(out):  # another process would hold this while it exports
        r = subprocess.run([sys.executable, '-m', 'alfnwb.cli', 'export', '--pid', pid, '--cache-dir',
                            str(base.cache_dir), '-o', str(out)], capture_output=True, text=True)
        assert r.returncode == 7, r.stderr
        assert f'another alfnwb process (pid {os.getpid()}) is writing it' in r.stderr
        assert not out.exists()
    r = subprocess.run([sys.executable, '-m', 'alfnwb.cli', '--quiet', 'export', '--pid', pid, '--cache-dir',
                        str(base.cache_dir), '-o', str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.nwb']  # no lock, no partial file left


def _limited(size):
    def preexec():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return preexec


def test_disk_full_is_reported_and_leaves_nothing(base, tmp_path):
    """A file size limit (ulimit -f) stands for a full disk: the forked writer fails, the CLI says why."""
    pid = base.sessions[0].probes[0].pid
    out = tmp_path / 'full' / 'x.nwb'
    out.parent.mkdir()
    # pynwb caches its type map (~300 kB) in HOME on first import, not atomically: under the limit it
    # would leave a truncated cache that breaks every later import; have it written first
    subprocess.run([sys.executable, '-c', 'import pynwb'], check=True)
    r = subprocess.run([sys.executable, '-m', 'alfnwb.cli', 'export', '--pid', pid, '--cache-dir',
                        str(base.cache_dir), '-o', str(out)], capture_output=True, text=True,
                       preexec_fn=_limited(300_000))
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f'alfnwb: error: output {out}: write failed: file too large ' \
                                                '(file size limit)'
    assert list(out.parent.iterdir()) == []


def test_disk_full_on_a_tiny_file_system(base, tmp_path):
    """A real full disk: a 300 kB tmpfs (needs the right to mount)."""
    pid = base.sessions[0].probes[0].pid
    tiny = tmp_path / 'tiny'
    tiny.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(tiny)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {(r.stderr or r.stdout).strip()}')
    try:
        r = subprocess.run([sys.executable, '-m', 'alfnwb.cli', 'export', '--pid', pid, '--cache-dir',
                            str(base.cache_dir), '-o', str(tiny / 'x.nwb')], capture_output=True, text=True)
        assert r.returncode == 7, r.stderr
        assert r.stderr.strip().splitlines()[-1] == f'alfnwb: error: output {tiny / "x.nwb"}: write failed: ' \
                                                    'no space left on device'
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(['umount', str(tiny)])


@pytest.mark.parametrize('seed', [3, 4])  # killed during start-up (1.0 s) and late in the export (5.7 s)
def test_kill9_at_a_random_moment_leaves_the_previous_file_or_the_new_one(base, tmp_path, seed):
    import h5py

    from alfnwb.readback import read_alf

    pid = base.sessions[0].probes[0].pid
    out = tmp_path / 'x.nwb'
    cmd = [sys.executable, '-m', 'alfnwb.cli', '--quiet', 'export', '--pid', pid, '--cache-dir',
           str(base.cache_dir), '-o', str(out), '--overwrite']
    previous = b'the previous file'
    out.write_bytes(previous)
    rng = np.random.default_rng(seed)
    # the export takes a few seconds: kill it anywhere from start-up to the rename
    delay = rng.uniform(0.5, 6.0)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    content = out.read_bytes()
    if content != previous:  # the rename happened: the file is the complete new one
        with h5py.File(out, 'r') as f:
            assert 'units/spike_times' in f
        assert read_alf(out)[0]['times'].size > 0
    # a new run cleans what the killed one left (partial file, lock) and succeeds
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.nwb']


def test_hostile_names_stay_inside_the_dandiset(base, cache, tmp_path):
    """Subject and probe names are data: path characters cannot make the batch write elsewhere."""
    import dataclasses

    from one.api import One

    from alfnwb.batch import plan_jobs, run_batch
    from alfnwb.dandi import nwb_relpath

    one = One(cache_dir=cache, mode='local')
    # names as a database could hold them (the cache's folders stay where ONE expects them)
    jobs = [dataclasses.replace(j, subject='../../escaped/../x',
                                relpath=nwb_relpath('../../escaped/../x', j.eid, f'../{j.probe}/..').as_posix())
            for j in plan_jobs(one, all_insertions=True)]
    ds = tmp_path / 'deep' / 'dandiset'
    report = run_batch(jobs, ds, {'cache_dir': str(cache)}, validate=False, progress=False)
    assert report.done == 2, report.failures
    written = [p for p in tmp_path.rglob('*') if p.is_file() and 'cache' not in p.relative_to(tmp_path).parts]
    assert written and all(ds in p.parents for p in written)
    assert sorted(p.parent.name for p in ds.glob('sub-*/*.nwb')) == ['sub-------escaped----x'] * 2
    assert not (tmp_path / 'escaped').exists() and not (tmp_path / 'deep' / 'escaped').exists()
    # a relative path that would leave the folder is refused, not written
    bad = dataclasses.replace(jobs[0], key='evil', relpath='../../evil.nwb')
    report = run_batch([bad], ds, {'cache_dir': str(cache)}, validate=False, progress=False)
    assert report.failed == 1 and 'outside the dandiset' in report.failures['evil']
    assert not list(tmp_path.rglob('evil.nwb'))


def test_metadata_is_parsed_safely(base, tmp_path):
    from alfnwb.errors import MetadataError

    marker = tmp_path / 'pwned'
    meta = tmp_path / 'm.yaml'
    meta.write_text(f'NWBFile: !!python/object/apply:os.system ["touch {marker}"]\n')
    from one.api import One
    with pytest.raises(MetadataError):
        export(One(cache_dir=base.cache_dir, mode='local'), tmp_path / 'x.nwb', pid=base.sessions[0].probes[1].pid,
               metadata=meta)
    assert not marker.exists() and not (tmp_path / 'x.nwb').exists()


# -- the HDF5 writer: never hangs, never loses an error ------------------------------------------------

#: The command line with its HDF5 write replaced (the forked child inherits the replacement):
#: ALFNWB_TEST_WRITE=raise: a bug (ZeroDivisionError) in the writer;
#: ALFNWB_TEST_WRITE=hold: the writer creates its partial file, writes "<pid> <partial file>" into
#: ALFNWB_TEST_MARKER, and waits until ALFNWB_TEST_RELEASE exists before writing for real.
HOOKED_CLI = """
import os, sys, time
from pathlib import Path

import alfnwb.nwb.io as nio

real = nio._write_hdf5


def hooked(nwbfile, tmp):
    if os.environ['ALFNWB_TEST_WRITE'] == 'raise':
        return 1 / 0
    Path(tmp).write_bytes(b'partial')
    marker = Path(os.environ['ALFNWB_TEST_MARKER'])
    marker.with_suffix('.tmp').write_text(f'{os.getpid()} {tmp}')
    os.replace(marker.with_suffix('.tmp'), marker)
    deadline = time.monotonic() + 120
    while not Path(os.environ['ALFNWB_TEST_RELEASE']).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(nwbfile, tmp)


nio._write_hdf5 = hooked
from alfnwb.cli import main

sys.exit(main(sys.argv[1:]))
"""


class Hooked:
    """A command line run with :data:`HOOKED_CLI`: its marker (who writes what) and its release file."""

    def __init__(self, folder: Path, mode: str, *args: str):
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / 'hooked_cli.py'
        script.write_text(HOOKED_CLI)
        self.marker, self.release = folder / f'marker-{os.urandom(4).hex()}', folder / f'release-{os.urandom(4).hex()}'
        env = {**os.environ, 'ALFNWB_TEST_WRITE': mode, 'ALFNWB_TEST_MARKER': str(self.marker),
               'ALFNWB_TEST_RELEASE': str(self.release)}
        # SIGINT as a terminal leaves it: a suite started in the background (``pytest &``) ignores SIGINT, and
        # an ignored signal stays ignored in every process started from it
        self.proc = subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def writing(self, timeout: float = 120) -> tuple[int, Path]:
        """Wait until the writer holds its partial file: (the writer's pid, the partial file)."""
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, 'the writer never started'
            time.sleep(0.05)
        pid, tmp = self.marker.read_text().split(' ', 1)
        return int(pid), Path(tmp)

    def finish(self, timeout: float = 180) -> tuple[int, str, str]:
        self.release.touch()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def _gone(pid: int) -> bool:
    """The process no longer exists, not even as a zombie (it was killed and reaped)."""
    import psutil

    return not psutil.pid_exists(pid)


def _small_nwbfile():
    from datetime import datetime, timezone

    from pynwb import NWBFile

    return NWBFile(session_description='reliability', identifier='reliability',
                   session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))


def _child_pid(caplog) -> int:
    pids = [int(m.rsplit(' ', 1)[1]) for m in caplog.messages if ' in child process ' in m]
    assert len(pids) == 1, caplog.messages
    return pids[0]


def test_export_with_live_threads_writes_in_process(base, tmp_path, caplog):
    """A thread busy with numpy work during the export (as numba's, tqdm's or a Dask worker's): no fork."""
    import threading

    from one.api import One

    from alfnwb.readback import read_alf

    stop, sums = threading.Event(), []

    def work():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            a = rng.standard_normal((200, 200))
            sums.append(float((a @ a).sum()))

    worker = threading.Thread(target=work, name='busy-numpy', daemon=True)
    worker.start()
    caplog.set_level('DEBUG', logger='alfnwb.nwb.io')
    try:
        r = export(One(cache_dir=base.cache_dir, mode='local'), tmp_path / 'x.nwb', pid=base.sessions[0].probes[0].pid)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive() and sums
    decisions = [m for m in caplog.messages if m.startswith('writing ')]
    assert len(decisions) == 1 and ' in this process (' in decisions[0] and 'busy-numpy' in decisions[0], decisions
    assert read_alf(r.path)[0]['times'].size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.nwb']


@pytest.mark.parametrize('isolate', [True, False], ids=['child', 'in process'])
def test_a_bug_in_the_writer_is_an_internal_error_with_its_traceback(tmp_path, monkeypatch, caplog, isolate):
    import alfnwb.nwb.io as nio
    from alfnwb.errors import InternalError

    def buggy_writer(nwbfile, tmp):
        return 1 / 0

    monkeypatch.setattr(nio, '_write_hdf5', buggy_writer)
    caplog.set_level('DEBUG', logger='alfnwb.nwb.io')
    out = tmp_path / 'x.nwb'
    with pytest.raises(InternalError) as e:
        nio.write_nwbfile(_small_nwbfile(), out, isolate=isolate)
    assert str(e.value) == f'output {out}: internal error: ZeroDivisionError: division by zero'
    assert e.value.exit_code == 70
    cause = e.value.__cause__
    if isolate:  # the child's full traceback, chained and logged
        assert isinstance(cause, nio.ChildTraceback)
        assert 'in buggy_writer' in cause.text and 'ZeroDivisionError: division by zero' in cause.text
        assert any('in buggy_writer' in m for m in caplog.messages)
        assert _gone(_child_pid(caplog))
    else:
        assert isinstance(cause, ZeroDivisionError)
        assert any('in buggy_writer' in r.exc_text for r in caplog.records if r.exc_text)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_dies_is_an_internal_error(tmp_path, monkeypatch):
    """The writer killed without a word (as the out-of-memory killer does)."""
    import alfnwb.nwb.io as nio
    from alfnwb.errors import InternalError

    monkeypatch.setattr(nio, '_write_hdf5', lambda nwbfile, tmp: (Path(tmp).write_bytes(b'half'),
                                                                  os.kill(os.getpid(), signal.SIGKILL)))
    out = tmp_path / 'x.nwb'
    with pytest.raises(InternalError, match=rf'^output {out}: internal error: the HDF5 writer killed by signal '
                                            rf'{int(signal.SIGKILL)} \(SIGKILL\)$'):
        nio.write_nwbfile(_small_nwbfile(), out, isolate=True)
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_writer_is_killed(tmp_path, monkeypatch, caplog):
    import alfnwb.nwb.io as nio

    def stuck(nwbfile, tmp):
        Path(tmp).write_bytes(b'half')
        time.sleep(300)

    monkeypatch.setattr(nio, '_write_hdf5', stuck)
    caplog.set_level('DEBUG', logger='alfnwb.nwb.io')
    out = tmp_path / 'x.nwb'
    t0 = time.monotonic()
    with pytest.raises(OutputError) as e:
        nio.write_nwbfile(_small_nwbfile(), out, isolate=True, stall_timeout=1.5)
    assert str(e.value) == f'output {out}: write failed: the HDF5 writer made no progress for 1.5 s and was stopped'
    assert time.monotonic() - t0 < 20
    child = _child_pid(caplog)
    with pytest.raises(ChildProcessError):  # reaped by the parent: nothing left to wait for
        os.waitpid(child, os.WNOHANG)
    assert _gone(child)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('channel', ['file growth', 'reports'])
def test_a_slow_writer_that_progresses_is_not_killed(tmp_path, monkeypatch, channel):
    """The timeout is on inactivity: a write longer than it, making progress, completes."""
    import h5py

    import alfnwb.nwb.io as nio
    from alfnwb.nwb.chunks import progress_tick

    real = nio._write_hdf5

    def slow(nwbfile, tmp):
        with open(tmp, 'ab') as f:
            for _ in range(10):  # 6 s in all, twice the timeout; progress every 0.6 s
                time.sleep(0.6)
                if channel == 'file growth':
                    f.write(b'x' * 1000)
                    f.flush()
                else:
                    progress_tick()  # what a chunked dataset's writer does for each chunk
        real(nwbfile, tmp)

    monkeypatch.setattr(nio, '_write_hdf5', slow)
    out = nio.write_nwbfile(_small_nwbfile(), tmp_path / 'x.nwb', isolate=True, stall_timeout=3)
    with h5py.File(out, 'r') as f:
        assert f['session_description'][()].decode() == 'reliability'
    assert list(tmp_path.iterdir()) == [out]


def test_cli_internal_error_is_one_line_and_debug_shows_the_child_traceback(base, tmp_path):
    pid = base.sessions[0].probes[1].pid
    out = tmp_path / 'out' / 'x.nwb'
    out.parent.mkdir()
    args = ['export', '--pid', pid, '--cache-dir', str(base.cache_dir), '-o', str(out)]
    code, _, err = Hooked(tmp_path / 'hook', 'raise', '--quiet', *args).finish()
    assert code == 70
    assert err.strip().splitlines() == [f'alfnwb: error: output {out}: internal error: ZeroDivisionError: '
                                        'division by zero']
    code, _, err = Hooked(tmp_path / 'hook', 'raise', '--debug', '--quiet', *args).finish()
    assert code != 0 and 'InternalError: output' in err
    assert 'ChildTraceback' in err and 'in hooked' in err and 'return 1 / 0' in err  # the child's own frames
    assert list(out.parent.iterdir()) == []


def test_ctrl_c_kills_the_writer_and_leaves_nothing(base, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the child writes."""
    out = tmp_path / 'out' / 'x.nwb'
    out.parent.mkdir()
    run = Hooked(tmp_path / 'hook', 'hold', '--quiet', 'export', '--pid', base.sessions[0].probes[1].pid,
                 '--cache-dir', str(base.cache_dir), '-o', str(out))
    child, partial = run.writing()
    assert child != run.proc.pid and partial.exists()
    os.killpg(run.proc.pid, signal.SIGINT)
    _, err = run.proc.communicate(timeout=30)
    assert run.proc.returncode == 130 and err.strip().splitlines()[-1] == 'alfnwb: interrupted', err
    assert _gone(child)
    assert not partial.exists() and list(out.parent.iterdir()) == []  # no output, no partial file, no lock


def test_export_in_a_dask_worker_with_two_threads(base, tmp_path):
    """Two exports at once on the two threads of a Dask worker: they write in process and finish."""
    import psutil
    from distributed import Client, LocalCluster

    from alfnwb.cli import main
    from alfnwb.readback import read_alf

    outs = [tmp_path / f'x{i}.nwb' for i in range(2)]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host='127.0.0.1',
                      dashboard_address=':0') as cluster, Client(cluster) as client:
        futures = [client.submit(main, ['--quiet', 'export', '--pid', probe.pid, '--cache-dir', str(base.cache_dir),
                                        '-o', str(out)], pure=False)
                   for probe, out in zip(base.sessions[0].probes, outs)]
        assert [f.result(timeout=300) for f in futures] == [0, 0]
        children = client.run(lambda: [c.pid for c in psutil.Process().children(recursive=True)])
    assert list(children.values()) == [[]]  # no writer child left behind
    for out in outs:
        assert read_alf(out)[0]['times'].size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x0.nwb', 'x1.nwb']


def test_a_file_that_fails_schema_validation_is_not_renamed(tmp_path, monkeypatch):
    """The writer's file misses a required dataset: validation (pynwb's, on the real file) stops the rename."""
    import h5py

    import alfnwb.nwb.io as nio
    from alfnwb.nwb.chunks import progress_tick

    real = nio._write_hdf5

    def incomplete(nwbfile, tmp):
        real(nwbfile, tmp)
        with h5py.File(tmp, 'a') as f:
            del f['session_description']

    monkeypatch.setattr(nio, '_write_hdf5', incomplete)
    out = tmp_path / 'x.nwb'
    with pytest.raises(OutputError, match=rf'^output {out}: NWB schema validation failed: .*session_description'):
        nio.write_nwbfile(_small_nwbfile(), out)
    assert list(tmp_path.iterdir()) == []


def test_a_batch_retries_a_write_that_failed_with_an_internal_error(base, tmp_path, monkeypatch):
    """The first write of the batch hits a bug: the job's error names it, and ``retries`` runs it again."""
    from one.api import One

    import alfnwb.nwb.io as nio
    from alfnwb.batch import plan_jobs, run_batch

    real, flag = nio._write_hdf5, tmp_path / 'failed-once'

    def fails_once(nwbfile, tmp):  # a file, not a counter: the write may run in a forked child
        if not flag.exists():
            flag.touch()
            raise ZeroDivisionError('division by zero')
        real(nwbfile, tmp)

    monkeypatch.setattr(nio, '_write_hdf5', fails_once)
    jobs = plan_jobs(One(cache_dir=base.cache_dir, mode='local'), all_insertions=True)
    ds = tmp_path / 'ds'
    report = run_batch(jobs, ds, {'cache_dir': str(base.cache_dir)}, validate=False, progress=False, retries=1)
    assert report.ok and report.done == len(jobs), report.failures
    m = pd.read_parquet(ds / '.alfnwb' / 'manifest.parquet').set_index('key')
    assert len(jobs) == 2 and sorted(m['attempts']) == [1, 2]  # the job that failed ran twice
    flag.unlink()
    report = run_batch(jobs, tmp_path / 'ds2', {'cache_dir': str(base.cache_dir)}, validate=False, progress=False)
    assert report.failed == 1
    (error,) = report.failures.values()
    assert error.startswith('output ') and error.endswith(': internal error: ZeroDivisionError: division by zero')


@pytest.mark.parametrize('frozen_by_caller', [False, True], ids=['nothing frozen', 'caller froze'])
def test_the_forked_writer_leaves_the_parents_objects_to_no_collector(tmp_path, monkeypatch, frozen_by_caller):
    """The child writer's garbage collector must not visit (and so copy) the parent's objects, also those
    made after the parent froze some (an export freezes the objects older than itself); the parent's
    collector is left as it was."""
    import gc

    import alfnwb.nwb.io as nio

    seen = tmp_path / 'child_freeze_count'
    write = nio._write_hdf5

    def counting_writer(nwbfile, tmp):
        seen.write_text(str(gc.get_freeze_count()))
        return write(nwbfile, tmp)

    monkeypatch.setattr(nio, '_write_hdf5', counting_writer)
    if frozen_by_caller:
        gc.freeze()
    try:
        before = gc.get_freeze_count()
        made = [[i] for i in range(5000)]  # objects made after the caller froze
        nio.write_nwbfile(_small_nwbfile(), tmp_path / 'x.nwb', isolate=True)
        # none added, none taken back (a frozen object can still be freed by its reference count)
        assert gc.get_freeze_count() == 0 if not before else before - 100 <= gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
    # the parent's objects, frozen in the child: those the caller froze (a few freed since) and those made since
    assert int(seen.read_text()) >= before - 100 + len(made) and len(made) == 5000
    assert (tmp_path / 'x.nwb').stat().st_size > 0


def test_the_forked_writer_returns_the_heaps_free_pages_first(tmp_path, monkeypatch):
    """Free heap pages left in the parent would stay resident through the write and be copied into the
    child as it reuses them: they are given back just before the fork, in the parent."""
    import alfnwb.nwb.io as nio

    calls = []
    monkeypatch.setattr(nio, 'return_free_memory', lambda: calls.append(os.getpid()) or True)
    forks = []
    fork = nio._fork_frozen
    monkeypatch.setattr(nio, '_fork_frozen', lambda safe: forks.append(len(calls)) or fork(safe))
    nio.write_nwbfile(_small_nwbfile(), tmp_path / 'x.nwb', isolate=True)
    assert calls == [os.getpid()] and forks == [1]  # once, here, before the fork
