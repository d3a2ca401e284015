"""Atlas-aware reanalysis: region selection, remaps, partial spike reads, catalog, HTTP, CLI."""

import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from one.api import One

from alfnwb.batch import plan_jobs, run_batch
from alfnwb.errors import AlfNwbError
from alfnwb.loading import load_probe
from alfnwb.reanalysis import load_spike_times, read_units, to_sorting, update_catalog

FS = 30000.0


@pytest.fixture(scope='module')
def rcache(tmp_path_factory):
    """Three sessions: every template; the alf-histology probes carry known regions."""
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('rcache'), seed=21, sessions=3, n_units=16, duration=30.0)


@pytest.fixture(scope='module')
def dandiset(rcache, tmp_path_factory):
    root = tmp_path_factory.mktemp('rds') / 'dandiset'
    one = One(cache_dir=rcache.cache_dir, mode='local')
    report = run_batch(plan_jobs(one, all_insertions=True), root, {'cache_dir': str(rcache.cache_dir)},
                       validate=False, progress=False)
    assert report.done == 6
    return root


@pytest.fixture(scope='module')
def truth(rcache):
    """(pid, cluster_id) -> Allen id of the peak channel, from the loader (not from NWB)."""
    one = One(cache_dir=rcache.cache_dir, mode='local')
    rows = []
    for s in rcache.sessions:
        for p in s.probes:
            data = load_probe(one, p.pid)
            atlas = data.channels.get('atlas_id')
            peak = np.asarray(data.clusters['channels'])
            ids = np.asarray(atlas)[peak] if atlas is not None else np.full(peak.size, -1)
            x_ml = np.asarray(data.channels['x'])[peak] if 'x' in data.channels else np.full(peak.size, np.nan)
            for c in range(peak.size):
                rows.append({'pid': p.pid, 'cluster_id': c, 'atlas_id': int(ids[c]), 'ml': x_ml[c],
                             'times': data.spikes['times'][data.spikes['clusters'] == c]})
    return pd.DataFrame(rows)


def _keys(df):
    return set(zip(df['pid'], df['cluster_id']))


@pytest.mark.parametrize('parent', ['Isocortex', 'HPF', 'TH', 'VISp', 'CTX'])
def test_parent_region_is_the_union_of_its_descendants(dandiset, truth, parent):
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    below = set(br.descendants(br.acronym2id(parent))['id'].tolist())
    expected = _keys(truth[truth['atlas_id'].isin(below)])
    got = read_units(dandiset, region=parent)
    assert _keys(got) == expected
    if parent in ('Isocortex', 'CTX', 'TH'):
        assert expected  # the synthetic tracks cross these
    # the same as asking for each region present below it, exactly
    present = sorted(set(got['acronym']))
    union = pd.concat([read_units(dandiset, region=a, descendants=False) for a in present]) if present else got
    assert _keys(union) == expected


def test_remaps_agree_with_iblatlas(dandiset, truth):
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    df = read_units(dandiset)
    assert len(df) == len(truth) and _keys(df) == _keys(truth)
    located = df[df['atlas_id'] > 0]
    assert len(located) > 10
    for mapping, col in (('Beryl', 'beryl_acronym'), ('Cosmos', 'cosmos_acronym')):
        expected = br.id2acronym(br.remap(located['atlas_id'].to_numpy(), source_map='Allen', target_map=mapping))
        np.testing.assert_array_equal(located[col].to_numpy(), expected)
    np.testing.assert_array_equal(located['acronym'].to_numpy(), br.id2acronym(located['atlas_id'].to_numpy()))
    # Beryl VISp gathers its layers; in the Allen parcellation VISp itself holds no unit
    visp = read_units(dandiset, region='VISp', mapping='Beryl', descendants=False)
    assert len(visp) and set(visp['beryl_acronym']) == {'VISp'} and set(visp['acronym']) > {'VISp5'} - {'x'}
    assert len(read_units(dandiset, region='VISp', mapping='Allen', descendants=False)) == 0
    # Cosmos: the whole isocortex is one region
    iso = read_units(dandiset, region='Isocortex', mapping='Cosmos', descendants=False)
    assert _keys(iso) == _keys(read_units(dandiset, region='Isocortex'))
    # hemisphere from the ML coordinate (the synthetic tracks are all left of the midline)
    t = truth.set_index(['pid', 'cluster_id'])
    for _, r in located.iterrows():
        assert r['hemisphere'] == ('left' if t.loc[(r['pid'], r['cluster_id']), 'ml'] < 0 else 'right')
    assert set(df.loc[df['atlas_id'] < 0, 'hemisphere']) <= {''}
    with pytest.raises(AlfNwbError, match='not an Allen acronym'):
        read_units(dandiset, region='Neocortex')
    with pytest.raises(AlfNwbError, match='mapping'):
        read_units(dandiset, mapping='Swanson2')


def test_min_label_and_columns(dandiset):
    df = read_units(dandiset, min_label=1, columns=['label', 'acronym'])
    assert list(df.columns) == ['file', 'eid', 'pid', 'probe', 'cluster_id', 'unit_row', 'label', 'acronym']
    assert len(df) and (df['label'] == 1).all()
    assert len(df) == int((read_units(dandiset)['label'] == 1).sum())


def test_partial_spike_reads_equal_full_reads(dandiset, truth):
    from pynwb import NWBHDF5IO

    sel = read_units(dandiset, region='Isocortex')
    sel = pd.concat([sel, read_units(dandiset).iloc[[0, 5, 6, 7]]], ignore_index=True)  # runs and gaps
    times = load_spike_times(sel)
    t = truth.set_index(['pid', 'cluster_id'])
    for (_, r), st in zip(sel.iterrows(), times):
        np.testing.assert_array_equal(st, t.loc[(r['pid'], r['cluster_id']), 'times'])
    f = sel['file'].iloc[0]
    with NWBHDF5IO(f, 'r') as io:
        units = io.read().units
        for (_, r), st in zip(sel.iterrows(), times):
            if r['file'] == f:
                np.testing.assert_array_equal(st, units['spike_times'][int(r['unit_row'])])
    sorting = to_sorting(sel)
    assert len(sorting.unit_ids) == len(sel)
    for i, st in enumerate(times):
        np.testing.assert_array_equal(sorting.get_unit_spike_train(i), np.round(st * FS).astype(np.int64))
    assert list(sorting.get_property('pid')) == list(sel['pid'])


def test_catalog_incremental_and_equal_to_direct_reads(rcache, dandiset, tmp_path):
    ds = tmp_path / 'ds'
    shutil.copytree(dandiset, ds)
    first = update_catalog(ds)
    assert (first.n_files, first.n_read, first.n_removed) == (6, 6, 0)
    again = update_catalog(ds)
    assert (again.n_read, again.n_removed, again.n_units) == (0, 0, first.n_units)
    # one file changed (re-exported), one removed: only the changed one is read
    files = sorted(ds.glob('sub-*/*.nwb'))
    import os
    os.utime(files[0], ns=(files[0].stat().st_atime_ns, files[0].stat().st_mtime_ns + 10**9))
    removed = files[1]
    gone = read_units(removed)
    removed.unlink()
    third = update_catalog(ds)
    assert (third.n_read, third.n_removed, third.n_units) == (1, 1, first.n_units - len(gone))
    # catalog queries equal direct reads, and open no NWB file (the files are moved away)
    queries = ({}, {'region': 'Isocortex', 'min_label': 0.5}, {'region': ['TH', 'HPF'], 'mapping': 'Beryl'})
    direct = [(q, read_units(ds, **q)) for q in queries]
    assert all(len(v) for _, v in direct)
    cat = third.path
    hidden = tmp_path / 'hidden'
    shutil.move(str(ds), str(hidden))
    for q, expected in direct:
        got = read_units(hidden / '.alfnwb' / 'catalog.parquet', **q)
        key = ['file', 'unit_row']
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True)[expected.columns],
                                      expected.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert not cat.exists()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that honours Range requests and counts the bytes it sends."""

    sent = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        size = path.stat().st_size
        rng = self.headers.get('Range')
        start, stop = 0, size - 1
        if rng:
            a, b = rng.split('=')[1].split('-')
            start, stop = int(a), min(int(b) if b else size - 1, size - 1)
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{stop}/{size}')
        else:
            self.send_response(200)
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(stop - start + 1))
        self.end_headers()
        with open(path, 'rb') as f:
            f.seek(start)
            data = f.read(stop - start + 1)
        type(self).sent += len(data)
        self.wfile.write(data)

    def do_HEAD(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        self.send_response(200)
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(path.stat().st_size))
        self.end_headers()


def test_http_source_reads_a_fraction_of_the_file(tmp_path, capsys):
    import functools

    from alfnwb.export import export
    from alfnwb.synthetic import write_cache

    # a probe of 10 minutes: the spike data dominate the file, as in real recordings
    cache = write_cache(tmp_path / 'cache', seed=3, sessions=1, n_units=60, duration=600.0)
    (tmp_path / 'web').mkdir()
    path = export(One(cache_dir=cache.cache_dir, mode='local'), tmp_path / 'web' / 'probe.nwb',
                  pid=cache.sessions[0].probes[0].pid, extensions='none').path
    handler = functools.partial(_RangeHandler, directory=str(tmp_path / 'web'))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/{path.name}'
        _RangeHandler.sent = 0
        remote = read_units(url, region='CTX')
        fetched = _RangeHandler.sent
        local = read_units(path, region='CTX')
        assert len(local)
        pd.testing.assert_frame_equal(remote.drop(columns='file'), local.drop(columns='file'))
        size = path.stat().st_size
        with capsys.disabled():
            print(f'\nregion query over HTTP: {fetched} of {size} bytes ({fetched / size:.1%})')
        assert 0 < fetched < size / 4
        times = load_spike_times(remote.iloc[:3])
        np.testing.assert_array_equal(np.concatenate(times), np.concatenate(load_spike_times(local.iloc[:3])))
    finally:
        server.shutdown()


def _process(*args):
    """A command as its own process (plots: a fresh matplotlib, whatever this process set)."""
    return subprocess.run([sys.executable, '-m', 'alfnwb.cli', '--quiet', *args], capture_output=True, text=True)


def test_cli_catalog_and_units(dandiset, tmp_path, run_main):
    ds = tmp_path / 'ds'
    shutil.copytree(dandiset, ds)
    r = run_main('--quiet', 'catalog', str(ds), '--output', str(tmp_path / 'cat.parquet'))
    assert r.returncode == 0 and '6 read' in r.stdout
    r = run_main('--quiet', 'units', str(tmp_path / 'cat.parquet'), '--region', 'Isocortex', '--mapping', 'Beryl',
                 '--min-label', '1')
    assert r.returncode == 0, r.stderr
    expected = read_units(ds, region='Isocortex', mapping='Beryl', min_label=1)
    assert f'{len(expected)} units in' in r.stdout
    for b in set(expected['beryl_acronym']):
        assert b in r.stdout
    r = run_main('--quiet', 'units', str(ds), '--region', 'TH,HPF', '-o', str(tmp_path / 'u.csv'))
    assert r.returncode == 0
    got = pd.read_csv(tmp_path / 'u.csv')
    assert len(got) == len(read_units(ds, region=['TH', 'HPF']))
    r = run_main('--quiet', 'units', str(ds), '--region', 'Nowhere')
    assert r.returncode == 1 and "'Nowhere' is not an Allen acronym" in r.stderr


def test_cli_plots(dandiset, tmp_path):
    from matplotlib.image import imread

    f = next(dandiset.glob('sub-*/*probe00*.nwb'))
    r = _process('plot', 'probe', str(f), '-o', str(tmp_path / 'p.png'), '--x', 'firing_rate')
    assert r.returncode == 0, r.stderr
    assert imread(tmp_path / 'p.png').shape[:2] == (1000, 800)
    r = _process('plot', 'regions', str(dandiset), '-o', str(tmp_path / 'r.png'), '--mapping', 'Beryl')
    assert r.returncode == 0, r.stderr
    assert imread(tmp_path / 'r.png').shape[:2] == (800, 800)
    r = _process('plot', 'probe', str(tmp_path / 'missing.nwb'), '-o', str(tmp_path / 'x.png'))
    assert r.returncode == 8 and not (tmp_path / 'x.png').exists()
