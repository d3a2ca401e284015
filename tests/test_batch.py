"""Batch publication: DANDI layout and names, validation in the manifest, failures isolated,
resume after kill -9, identical outputs serial / local processes / Dask."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from alfnwb.batch import plan_jobs, read_id_list, run_batch
from alfnwb.dandi import dandi_safe, nwb_relpath
from alfnwb.errors import AlfNwbError, OutputError

from conftest import DATA


@pytest.fixture(scope='module')
def bcache(tmp_path_factory):
    """Two sessions (4 insertions) of real-style subjects: ZFM-01576 (hyphen), CSH_ZAD_011 (underscores)."""
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('bcache'), seed=5, sessions=2, n_units=8, duration=20.0)


@pytest.fixture(scope='module')
def serial(bcache, tmp_path_factory):
    """The reference: every insertion of the cache, one process, validated."""
    from one.api import One

    one = One(cache_dir=bcache.cache_dir, mode='local')
    jobs = plan_jobs(one, all_insertions=True)
    out = tmp_path_factory.mktemp('serial') / 'dandiset'
    report = run_batch(jobs, out, {'cache_dir': str(bcache.cache_dir)}, progress=False)
    return report


def _cli(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'alfnwb.cli', '--quiet', *args], capture_output=True, text=True,
                          **kw)


def _content(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, except the creation date and hdmf's random object ids."""
    out = {}
    with h5py.File(path, 'r') as f:
        def visit(name, obj):
            if name == 'file_create_date':
                return
            for k, v in obj.attrs.items():
                if k == 'object_id':
                    continue
                out[f'{name}@{k}'] = v if not isinstance(v, h5py.Reference) else 'ref'
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if obj.dtype.kind == 'O' or (obj.dtype.names is None and obj.dtype.kind == 'V'):
                    data = np.asarray([str(x) for x in np.ravel(data)])
                elif obj.dtype.names:
                    data = np.asarray([str(x) for x in np.ravel(data)])
                out[name] = data
        f.visititems(visit)
    return out


def _assert_same_files(a: Path, b: Path):
    files_a = sorted(p.relative_to(a) for p in a.glob('sub-*/*.nwb'))
    files_b = sorted(p.relative_to(b) for p in b.glob('sub-*/*.nwb'))
    assert files_a == files_b and files_a
    for rel in files_a:
        ca, cb = _content(a / rel), _content(b / rel)
        assert ca.keys() == cb.keys(), rel
        for k in ca:
            va, vb = ca[k], cb[k]
            if isinstance(va, np.ndarray):
                np.testing.assert_array_equal(va, vb, err_msg=f'{rel}:{k}')
            else:
                assert str(va) == str(vb), f'{rel}:{k}'


def test_dandi_names_match_dandi_organize():
    """Our DANDI-safe names are dandi's own, for all 699 real Brain Wide Map subjects and for hostile names."""
    from dandi.organize import _sanitize_value

    bwm = pd.read_parquet(DATA / 'ibl' / 'bwm_insertions.pqt')
    names = list(bwm['subject'].unique()) + list(bwm['probe_name'].unique()) + ['a b', 'x:y', 'we"ird', 'p.q']
    for name in names:
        assert dandi_safe(name) == _sanitize_value(name, 'subject'), name
    assert dandi_safe('CSHL_020') == 'CSHL-020'
    assert dandi_safe('NYU-11') == 'NYU-11'
    assert dandi_safe('ibl_witten_13') == 'ibl-witten-13'
    eid = bwm['eid'].iloc[0]
    assert nwb_relpath('CSHL_020', eid, 'probe00').as_posix() == \
        f'sub-CSHL-020/sub-CSHL-020_ses-{eid}_probe-probe00_ecephys.nwb'
    # names are data: separators and dots never make a path leave the dandiset
    for evil in ('../../etc', '/abs/path', 'a/../../b', '..', 'x\\..\\y'):
        rel = nwb_relpath(evil, eid, evil)
        assert len(rel.parts) == 2 and '..' not in rel.parts and not rel.is_absolute()
        assert '/' not in rel.name and '\\' not in rel.name
    from alfnwb.dandi import inside
    with pytest.raises(OutputError, match='outside the dandiset'):
        inside(Path('/tmp/ds'), Path('../x.nwb'))
    with pytest.raises(AlfNwbError):
        dandi_safe('')


def test_layout_manifest_and_validation(bcache, serial):
    root = serial.dandiset_dir
    assert serial.ok and serial.done == 4 and serial.failed == 0
    assert (root / 'dandiset.yaml').exists()
    m = serial.manifest.set_index('key')
    for session in bcache.sessions:
        sub = dandi_safe(session.subject)
        for p in session.probes:
            rel = f'sub-{sub}/sub-{sub}_ses-{session.eid}_probe-{p.name}_ecephys.nwb'
            assert (root / rel).is_file()
            row = m.loc[p.pid]
            assert row['status'] == 'done' and row['path'] == rel and row['subject'] == session.subject
            assert row['size'] == (root / rel).stat().st_size
            assert row['eid'] == session.eid and row['probe'] == p.name and row['kind'] == 'pid'
            assert row['spike_sorter'] in ('iblsorter', 'pykilosort') and row['histology'] in ('alf', 'none')
            assert row['revision'] == ('2024-05-06' if row['spike_sorter'] == 'iblsorter' else 'unrevisioned')
            assert row['n_units'] > 0 and row['duration_s'] > 0 and row['attempts'] == 1
            # validation ran: no error, and the honest 'unknown' location of a probe without histology
            # is recorded as a dandi warning
            assert row['dandi_errors'] == 0 and row['inspector_critical'] == 0
            if row['histology'] == 'none':
                assert row['dandi_warnings'] >= 1 and "'unknown'" in row['validation']
    subjects = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')}
    assert subjects == {f'sub-{dandi_safe(s.subject)}' for s in bcache.sessions}
    assert any('_' in s.subject for s in bcache.sessions)  # a real underscore name was made safe
    report = pd.read_json(root / '.alfnwb' / 'report.json', typ='series')
    assert report['done'] == 4 and report['failed'] == 0
    # the subject id inside the file stays the IBL nickname
    f = next(root.glob('sub-CSH-ZAD-011/*.nwb'))
    with h5py.File(f, 'r') as h:
        assert h['general/subject/subject_id'][()].decode() == 'CSH_ZAD_011'


def test_failing_insertions_are_isolated(bcache, tmp_path):
    """A corrupt insertion and an unknown pid are reported; the others are exported; exit code 9."""
    cache = tmp_path / 'cache'
    shutil.copytree(bcache.cache_dir, cache)
    bad = bcache.sessions[0].probes[0]
    s = bcache.sessions[0]
    folder = next((cache / s.path.relative_to(bcache.cache_dir)).glob(f'alf/{bad.name}/*/#*#'))
    clusters = np.load(folder / 'spikes.clusters.npy')
    np.save(folder / 'spikes.clusters.npy', clusters[:-5])  # lengths disagree with spikes.times
    good = bcache.sessions[1].probes[0]
    ids = tmp_path / 'pids.txt'
    ids.write_text(f'# two real, one unknown\n{bad.pid}\n{good.pid}\n00000000-0000-4000-8000-000000000000\n')
    r = _cli('batch', '--pids', str(ids), '--cache-dir', str(cache), '--dandiset-dir', str(tmp_path / 'ds'),
             '--no-validate')
    assert r.returncode == 9, r.stderr
    m = pd.read_parquet(tmp_path / 'ds' / '.alfnwb' / 'manifest.parquet').set_index('key')
    assert m.loc[good.pid, 'status'] == 'done'
    assert m.loc[bad.pid, 'status'] == 'failed'
    assert m.loc[bad.pid, 'error'].startswith(f'insertion {bad.pid}') and 'spikes.clusters' in m.loc[bad.pid, 'error']
    assert m.loc['00000000-0000-4000-8000-000000000000', 'status'] == 'failed'
    assert '1 exported, 0 already done (skipped), 2 failed' in r.stdout
    assert f'FAILED {bad.pid}: insertion {bad.pid}' in r.stdout
    written = list((tmp_path / 'ds').rglob('*.nwb'))
    assert [p.name for p in written] == [Path(m.loc[good.pid, 'path']).name]
    assert not any('partial' in p.name for p in (tmp_path / 'ds').rglob('*'))


def test_id_lists(tmp_path):
    (tmp_path / 'a.txt').write_text('x\n# c\n\ny  # z\nx\n')
    assert read_id_list(tmp_path / 'a.txt', 'pid') == ['x', 'y']
    pd.DataFrame({'eid': ['e1', 'e2'], 'other': [1, 2]}).to_csv(tmp_path / 'b.csv', index=False)
    assert read_id_list(tmp_path / 'b.csv', 'eid') == ['e1', 'e2']
    bwm = read_id_list(DATA / 'ibl' / 'bwm_insertions.pqt', 'pid')
    assert len(bwm) == 699


def test_per_session(bcache, tmp_path):
    from one.api import One

    one = One(cache_dir=bcache.cache_dir, mode='local')
    jobs = plan_jobs(one, eids=[bcache.sessions[1].eid])
    assert [j.kind for j in jobs] == ['eid'] and '_probe-' not in jobs[0].relpath
    report = run_batch(jobs, tmp_path / 'ds', {'cache_dir': str(bcache.cache_dir)}, progress=False, validate=False)
    assert report.done == 1
    with h5py.File(tmp_path / 'ds' / jobs[0].relpath, 'r') as f:
        assert set(f['general/devices']) == {'probe00', 'probe01', 'models'}  # models: their DeviceModels
        assert {f[f'general/devices/{p}'].get('model', getlink=True).path for p in ('probe00', 'probe01')} <= {
            f'/general/devices/models/{m}' for m in f['general/devices/models']}


def test_resume_after_kill9(bcache, serial, tmp_path):
    """kill -9 in the middle of a file: nothing partial in the dandiset; the rerun finishes the rest."""
    ds = tmp_path / 'ds'
    cmd = [sys.executable, '-m', 'alfnwb.cli', '--quiet', 'batch', '--all', '--cache-dir', str(bcache.cache_dir),
           '--dandiset-dir', str(ds), '--no-validate']  # validation has its own test
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = ds / '.alfnwb' / 'manifest.parquet'
    tmp = ds / '.alfnwb' / 'tmp'
    deadline = time.time() + 120
    killed_mid_file = False
    while time.time() < deadline and proc.poll() is None:
        done = 0
        if manifest.exists():
            try:
                done = int((pd.read_parquet(manifest)['status'] == 'done').sum())
            except Exception:  # noqa: BLE001 - read while being replaced
                pass
        if done >= 1 and tmp.exists() and any(tmp.iterdir()):
            os.killpg(proc.pid, signal.SIGKILL)
            killed_mid_file = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_mid_file, 'the batch ended before it could be killed in the middle of a file'
    # nothing partial where DANDI looks; every file there is complete (the lock of the file being
    # written may stay: an empty dot file, skipped by dandi upload, free and removed by the next run)
    visible = [p for p in ds.rglob('*') if '.alfnwb' not in p.parts]
    assert not [p for p in visible if 'partial' in p.name or (p.name.startswith('.') and p.suffix != '.lock')]
    done_before = pd.read_parquet(manifest)
    done_before = set(done_before.loc[done_before['status'] == 'done', 'key'])
    assert 1 <= len(done_before) < 4
    assert any(tmp.iterdir())  # the partial file is in the state folder, not the dandiset
    for p in visible:
        if p.suffix == '.nwb':
            with h5py.File(p, 'r') as f:
                assert 'units/spike_times' in f
    r = _cli('batch', '--all', '--cache-dir', str(bcache.cache_dir), '--dandiset-dir', str(ds), '--no-validate')
    assert r.returncode == 0, r.stderr
    assert f'{4 - len(done_before)} exported, {len(done_before)} already done (skipped), 0 failed' in r.stdout
    assert not tmp.exists() or not any(tmp.iterdir())
    assert not [p for p in ds.rglob('.*') if '.alfnwb' not in p.parts]  # no lock file left either
    m = pd.read_parquet(manifest)
    assert set(m['status']) <= {'done', 'skipped'} and len(m) == 4
    _assert_same_files(serial.dandiset_dir, ds)


def test_local_processes_and_dask_give_identical_files(bcache, serial, tmp_path, run_main):
    from distributed import Client, LocalCluster

    jobs_dir = {'cache_dir': str(bcache.cache_dir)}
    from one.api import One

    jobs = plan_jobs(One(cache_dir=bcache.cache_dir, mode='local'), all_insertions=True)
    # validation is the serial run's (test_layout_manifest_and_validation): here the files themselves
    local = run_batch(jobs, tmp_path / 'local', jobs_dir, workers=2, progress=False, validate=False)
    assert local.done == 4 and local.ok
    _assert_same_files(serial.dandiset_dir, tmp_path / 'local')

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1',
                      dashboard_address=None) as cluster:
        # the command line's own code from the parsed arguments on, in this process (the workers are the
        # cluster's processes)
        r = run_main('--quiet', 'batch', '--all', '--cache-dir', str(bcache.cache_dir), '--dandiset-dir',
                     str(tmp_path / 'dask'), '--scheduler', cluster.scheduler_address, '--no-validate')
        assert r.returncode == 0, r.stderr
        with Client(cluster) as client:
            ran_on = client.run(lambda: os.getpid())
            profiling = client.run(lambda dask_worker: 'profile' in dask_worker.periodic_callbacks)
        assert len(ran_on) == 2
    assert '4 exported' in r.stdout
    # Dask's default: both workers profile, and the user is told once, with the workers and the fix
    assert list(profiling.values()) == [True, True]
    told = [line for line in r.stderr.splitlines() if "run Dask's profiler" in line]
    assert told == [f"alfnwb: warning: 2 Dask worker(s) ({', '.join(sorted(profiling))}) run Dask's profiler every "
                    '10 ms, which slows each export (5-7 % measured): start them with '
                    'DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (docs/publish.md)'], r.stderr
    _assert_same_files(serial.dandiset_dir, tmp_path / 'dask')
    for name in ('local', 'dask'):
        m = pd.read_parquet(tmp_path / name / '.alfnwb' / 'manifest.parquet').set_index('key').sort_index()
        ref = serial.manifest.set_index('key').sort_index()
        for col in ('status', 'path', 'spike_sorter', 'revision', 'histology', 'n_units'):
            assert list(m[col]) == list(ref[col]), (name, col)


def test_workers_started_as_publish_md_advises_are_not_named(tmp_path, recwarn):
    """docs/publish.md's advice works: workers started under alfnwb.batch.DASK_WORKER_CONFIG do not profile,
    their event loop ticks every second and its system monitor runs every 5 s (Dask: 20 ms and 500 ms), the
    memory monitor keeps Dask's 100 ms, and run_batch says nothing (no job: the check is made as the client is
    opened; test_local_processes_and_dask_give_identical_files exports on Dask's defaults, and is warned)."""
    import dask.config
    from distributed import Client, LocalCluster

    from alfnwb.batch import DASK_WORKER_CONFIG, dask_profiling_workers

    with dask.config.set(DASK_WORKER_CONFIG), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host='127.0.0.1',
                         dashboard_address=None) as cluster, Client(cluster) as client:
        assert dask_profiling_workers(client) == {}
        every = client.run(lambda dask_worker: {k: float(v.callback_time) for k, v in
                                                dask_worker.periodic_callbacks.items()})
        [every] = every.values()
        assert 'profile' not in every and (every['tick'], every['monitor'], every['memory_monitor']) == (1e3, 5e3, 100)
        report = run_batch([], tmp_path / 'ds', {'cache_dir': str(tmp_path)}, client=client, validate=False,
                           progress=False)
    assert report.ok and report.done == 0
    assert not [w for w in recwarn if 'profiler' in str(w.message)]


@pytest.mark.parametrize('quiet', [True, False])
def test_a_one_worker_batch_writes_each_file_in_the_forked_writer(bcache, serial, tmp_path, quiet):
    """`alfnwb batch --workers 1` runs its jobs in the user's process: each file is written in a forked
    child, as `alfnwb export` writes it. Its progress bar (even disabled by --quiet) once started tqdm's
    monitor thread, and every file was then written in the batch's own process. A fresh process, as
    users start the CLI: threads an earlier test started cannot decide it."""
    code = ('import logging, sys; logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s"); '
            'logging.getLogger("alfnwb.nwb.io").setLevel(logging.DEBUG); from alfnwb.cli import main; '
            'sys.exit(main(sys.argv[1:]))')
    out = tmp_path / 'ds'
    r = subprocess.run([sys.executable, '-c', code, *(['--quiet'] if quiet else []), 'batch', '--all',
                        '--cache-dir', str(bcache.cache_dir), '--dandiset-dir', str(out), '--workers', '1',
                        '--no-validate'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    # the bar (without --quiet) shares stderr with the log, on the same lines
    decisions = re.findall(r'writing \S+ in (child process|this process)', r.stderr)
    assert decisions == ['child process'] * 4, r.stderr
    _assert_same_files(out, serial.dandiset_dir)


def test_upload_needs_a_dandiset(tmp_path):
    r = _cli('upload', str(tmp_path))
    assert r.returncode == 1 and 'no dandiset.yaml' in r.stderr


def test_a_jobs_collection_walks_only_what_the_job_made(bcache, tmp_path):
    """Each export collects its reference cycles (they hold its arrays). In a worker (local or Dask) or a
    user's Python, that collection walks only the job's objects: a garbage cycle the process made before the
    job is left to the process's own next collection, and the collector is as the job found it."""
    import gc
    import weakref
    from dataclasses import asdict

    from one.api import One

    from alfnwb.batch import run_job

    class Node:
        pass

    job = asdict(plan_jobs(One(cache_dir=bcache.cache_dir, mode='local'), all_insertions=True)[0])
    gc.collect()
    gc.disable()
    try:
        before = Node()
        before.self = before
        old = weakref.ref(before)
        del before
        row = run_job(job, str(tmp_path / 'ds'), {'cache_dir': str(bcache.cache_dir)}, {}, validate=False)
        assert row['status'] == 'done', row['error']
        assert old() is not None and gc.get_freeze_count() == 0
        gc.collect()
        assert old() is None
    finally:
        gc.enable()
