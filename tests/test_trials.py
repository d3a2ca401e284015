"""Trials in the file and event-aligned responses by region, across files (issue 14)."""

import functools
import http.server
import subprocess
import sys
import threading
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from one.api import One

import alfnwb
from alfnwb.errors import DataWarning, NWBReadError
from alfnwb.events import bin_edges
from alfnwb.export import export
from alfnwb.loading import load_probe
from alfnwb.nwb import layout
from alfnwb.synthetic.task import CONTRASTS, RESPONSIVE_REGIONS

EVENT = 'stimOn_times'
BY = ['contrastLeft', 'probabilityLeft']


def _loader_trials(one, eid):
    from brainbox.io.one import SessionLoader

    loader = SessionLoader(one=one, eid=eid)
    loader.load_trials()
    return loader.trials


@pytest.fixture(scope='module')
def folder(synth, tmp_path_factory):
    """Two files of two sessions: session 0 probe00 (thalamus track) and session 2 probe01 (visual)."""
    one = One(cache_dir=synth.cache_dir, mode='local')
    out = tmp_path_factory.mktemp('trials') / 'web'
    out.mkdir()
    for name, probe in (('a.nwb', synth.sessions[0].probes[0]), ('b.nwb', synth.sessions[2].probes[1])):
        export(one, out / name, pid=probe.pid, extensions='none')
    return out


@pytest.fixture(scope='module')
def loaded(synth, folder):
    """Per file: the loader's trials and (cluster id -> spike times) of its probe, straight from ONE."""
    one = One(cache_dir=synth.cache_dir, mode='local')
    out = {}
    for name, session, probe in (('a.nwb', synth.sessions[0], synth.sessions[0].probes[0]),
                                 ('b.nwb', synth.sessions[2], synth.sessions[2].probes[1])):
        data = load_probe(one, probe.pid)
        t, c = data.spikes['times'], data.spikes['clusters']
        out[str((folder / name).resolve())] = (_loader_trials(one, session.eid),
                                               {k: t[c == k] for k in range(data.n_clusters)})
    return out


def test_trials_table_equals_session_loader(synth, folder, loaded):
    for file, (trials, _) in loaded.items():
        got = alfnwb.read_trials(file)
        pd.testing.assert_frame_equal(got, trials)  # names, order, dtypes, values, NaN
        assert trials[EVENT].isna().any() or trials['firstMovement_times'].isna().any()
        with h5py.File(file, 'r') as f:
            group = f[layout.TRIALS_PATH]
            assert group['stimOn_times'].attrs['description'] == layout.TRIALS['stimOn_times'].description
            assert f['general/protocol'][()].decode().startswith('_iblrig_tasks_ephysChoiceWorld')
            prov = f[layout.PROVENANCE_PATH]
            assert prov['trials_collection'][0].decode() == 'alf' and prov['trials_revision'][0].decode() == ''
        summary = alfnwb.info(file)
        assert summary['trials'] == len(trials)
        assert summary['session']['task_protocol'].startswith('_iblrig_tasks_ephysChoiceWorld')


def test_synthetic_task_is_ibl_like(synth):
    for s in synth.sessions:
        t = s.trials
        assert set(np.unique(t['probabilityLeft'])) <= {0.2, 0.5, 0.8} and (t['probabilityLeft'][:20] == 0.5).all()
        contrast = np.where(np.isnan(t['contrastLeft']), t['contrastRight'], t['contrastLeft'])
        assert set(np.unique(contrast)) <= set(CONTRASTS)
        assert (np.isnan(t['contrastLeft']) != np.isnan(t['contrastRight'])).all()
        assert np.all(np.diff(t['intervals'][:, 0]) > 0) and np.all(t['intervals'][:, 1] > t['intervals'][:, 0])
        ok = np.isfinite(t['stimOn_times'])
        assert np.all(t['stimOn_times'][ok] > t['intervals'][ok, 0])
        assert set(np.unique(t['choice'])) <= {-1.0, 0.0, 1.0} and set(np.unique(t['feedbackType'])) <= {-1.0, 1.0}
        for p in s.probes:  # evoked spikes merged in: samples sorted, times from samples
            sp = p.default_sorting.spikes
            assert np.all(np.diff(sp['samples']) >= 0)
            np.testing.assert_allclose(sp['times'], sp['samples'] / 30000.0 * (1 + p.clock_drift) + p.clock_offset)
    assert sum(np.isnan(s.trials['stimOn_times']).sum() for s in synth.sessions) > 0


def _independent(units, loaded, edges, by):
    """peri_event's table recomputed with np.searchsorted per unit, trial and bin on the loader's data."""
    rows = []
    for u in units.itertuples():
        trials, times = loaded[u.file]
        st = times[u.cluster_id]
        for values, g in trials.groupby(by, dropna=False, sort=True):
            ev = g[EVENT].to_numpy()
            ok = np.isfinite(ev)
            idx = np.searchsorted(st, ev[ok][:, None] + edges[None, :])
            counts = np.diff(idx, axis=1).sum(axis=0)
            for k, n in enumerate(counts):
                rows.append((u.file, u.cluster_id, *values, k, int(n), int(ok.sum()), int((~ok).sum())))
    return pd.DataFrame(rows, columns=['file', 'cluster_id', *by, 'k', 'spike_count', 'n_trials', 'n_trials_nan'])


def _check_counts(got, expected, edges):
    got = got.assign(k=np.round((got['time'] - edges[0]) / (edges[1] - edges[0]) - 0.5).astype(int))
    key = ['file', 'cluster_id', *BY, 'k']
    a = got.sort_values(key).reset_index(drop=True)
    b = expected.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b)
    pd.testing.assert_frame_equal(a[b.columns], b, check_dtype=False)
    assert a['spike_count'].sum() > 0


def test_peri_event_counts_equal_an_independent_computation(folder, loaded):
    units = alfnwb.read_units(folder)
    assert units['file'].nunique() == 2
    window, bin_size = (-0.2, 0.3), 0.02
    got = alfnwb.peri_event(units, EVENT, window=window, bin_size=bin_size, by=BY)
    edges = bin_edges(window, bin_size)
    _check_counts(got, _independent(units, loaded, edges, BY), edges)
    rate = got['spike_count'] / got['n_trials'] / bin_size
    np.testing.assert_allclose(got['rate'][got['n_trials'] > 0], rate[got['n_trials'] > 0])
    assert got['rate'][got['n_trials'] == 0].isna().all()
    for c in ('eid', 'pid', 'probe', 'unit_row', 'acronym', 'beryl_acronym', 'cosmos_acronym'):
        assert c in got


def test_nan_event_times_are_left_out_and_counted(folder, loaded):
    units = alfnwb.read_units(folder)
    got = alfnwb.peri_event(units, EVENT, by='probabilityLeft')
    per_file = got.drop_duplicates(['file', 'probabilityLeft']).groupby('file')[['n_trials', 'n_trials_nan']].sum()
    n_nan = 0
    for file, (trials, _) in loaded.items():
        assert per_file.loc[file, 'n_trials_nan'] == trials[EVENT].isna().sum()
        assert per_file.loc[file, 'n_trials'] == trials[EVENT].notna().sum()
        n_nan += int(trials[EVENT].isna().sum())
    assert n_nan > 0  # the synthetic sessions have missed photodiode fronts


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range requests (fsspec reads by ranges)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        with open(path, 'rb') as f:
            data = f.read()
        rng = self.headers.get('Range')
        start, stop = 0, len(data) - 1
        if rng:
            a, b = rng.split('=')[1].split('-')
            start, stop = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{stop}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(stop - start + 1))
        self.end_headers()
        self.wfile.write(data[start:stop + 1])

    def do_HEAD(self):
        import os

        self.send_response(200)
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(os.path.getsize(self.translate_path(self.path))))
        self.end_headers()


def test_peri_event_over_http_equals_local(folder, loaded):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_RangeHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        urls = [f'{base}/a.nwb', f'{base}/b.nwb']
        remote = alfnwb.peri_event(alfnwb.read_units(urls), EVENT, by=BY)
        local = alfnwb.peri_event(alfnwb.read_units([folder / 'a.nwb', folder / 'b.nwb']), EVENT, by=BY)
        assert remote['file'].str.startswith('http://').all()
        pd.testing.assert_frame_equal(remote.drop(columns='file'), local.drop(columns='file'))
        pd.testing.assert_frame_equal(alfnwb.read_trials(urls[0]), loaded[str((folder / 'a.nwb').resolve())][0])
    finally:
        server.shutdown()


def test_responsive_regions_are_found(folder):
    """Regions whose units fire more after stimulus onset than before, and more at high contrast."""
    units = alfnwb.read_units(folder, region='root', mapping='Beryl')  # located units only
    psth = alfnwb.peri_event(units, EVENT, window=(-0.25, 0.25), bin_size=0.05)
    psth = psth[psth['n_trials'] > 0]
    post = psth[(psth['time'] > 0.04)].groupby(['file', 'unit_row', 'beryl_acronym'])['rate'].mean()
    pre = psth[psth['time'] < 0].groupby(['file', 'unit_row', 'beryl_acronym'])['rate'].mean()
    gain = (post - pre).groupby(level='beryl_acronym').agg(['mean', 'size'])
    gain = gain[gain['size'] >= 2]
    found = set(gain.index[gain['mean'] > 4.0])
    present = set(gain.index)
    assert found == present & set(RESPONSIVE_REGIONS)
    assert found and present - found  # both kinds are present in the test files
    summary = alfnwb.peri_event_by_region(alfnwb.peri_event(units, EVENT, by='contrastRight'), mapping='Beryl')
    region = sorted(found)[0]
    late = summary[(summary['region'] == region) & summary['time'].between(0.05, 0.2)]
    by_contrast = late.groupby('contrastRight', dropna=True)['rate_mean'].mean()
    assert by_contrast.loc[1.0] > by_contrast.loc[0.0]  # the response grows with contrast


def test_region_summary_is_mean_and_sem_across_units(folder):
    psth = alfnwb.peri_event(alfnwb.read_units(folder), EVENT, by='choice')
    summary = alfnwb.peri_event_by_region(psth, mapping='Cosmos')
    row = summary.iloc[len(summary) // 2]
    sel = psth[(psth['cosmos_acronym'] == row['region']) & (psth['choice'] == row['choice'])
               & (psth['time'] == row['time'])]['rate'].dropna()
    assert row['n_units'] == len(sel)
    assert row['rate_mean'] == pytest.approx(sel.mean())
    assert row['rate_sem'] == pytest.approx(sel.std(ddof=1) / np.sqrt(len(sel)), nan_ok=True)
    assert list(summary.columns) == ['region', 'choice', 'event', 'time', 'rate_mean', 'rate_sem', 'n_units']


def test_catalog_records_trials_and_protocol(folder, tmp_path):
    cat = alfnwb.update_catalog(folder, tmp_path / 'cat.parquet')
    df = pd.read_parquet(cat.path)
    assert (df['n_trials'] > 0).all() and df['task_protocol'].str.contains('ephysChoiceWorld').all()
    assert len(alfnwb.read_units(cat.path, protocol='ephysChoiceWorld')) == len(df)
    assert len(alfnwb.read_units(folder, protocol='passiveChoiceWorld')) == 0
    from_catalog = alfnwb.peri_event(alfnwb.read_units(cat.path, region='VISp', mapping='Beryl'), EVENT)
    direct = alfnwb.peri_event(alfnwb.read_units(folder, region='VISp', mapping='Beryl'), EVENT)
    pd.testing.assert_frame_equal(from_catalog, direct)


def test_session_without_trials_exports_with_a_warning(tmp_path, synth):
    from alfnwb.synthetic import write_cache

    cache = write_cache(tmp_path / 'c', seed=4, sessions=1, n_units=5, duration=15.0, trials=False)
    assert cache.sessions[0].trials is None
    one = One(cache_dir=cache.cache_dir, mode='local')
    eid = cache.sessions[0].eid
    with pytest.warns(DataWarning, match=f'^session {eid}: no trials loaded'):
        r = export(one, tmp_path / 'none.nwb', pid=cache.sessions[0].probes[0].pid, extensions='none')
    assert one.wildcards is True  # SessionLoader.load_trials leaves it False when it fails: restored
    with h5py.File(r.path, 'r') as f:
        assert layout.TRIALS_PATH not in f
        assert f'session {eid}: no trials loaded' in f[layout.PROVENANCE_PATH]['warnings'][0].decode()
    with pytest.raises(NWBReadError, match='no trials table'):
        alfnwb.read_trials(r.path)
    assert alfnwb.info(r.path)['trials'] is None
    with pytest.warns(DataWarning, match='no trials table'):
        assert alfnwb.peri_event(alfnwb.read_units(r.path), EVENT).empty
    # --no-trials: a session with trials exported without them, and without a warning
    with warnings.catch_warnings():
        warnings.simplefilter('error', DataWarning)
        r = export(One(cache_dir=synth.cache_dir, mode='local'), tmp_path / 'no.nwb',
                   pid=synth.sessions[0].probes[0].pid, extensions='none', trials=False)
    with h5py.File(r.path, 'r') as f:
        assert layout.TRIALS_PATH not in f


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'alfnwb.cli', '--quiet', *args], capture_output=True, text=True)


def test_cli_psth_plot_and_info(folder, tmp_path):
    from matplotlib.image import imread

    r = _cli('psth', str(folder), '--event', EVENT, '--window', '-0.1', '0.3', '--bin', '0.05',
             '--by', 'contrastLeft,choice', '--region', 'root', '--mapping', 'Beryl', '-o', str(tmp_path / 'p.csv'))
    assert r.returncode == 0, r.stderr
    expected = alfnwb.peri_event(alfnwb.read_units(folder, region='root', mapping='Beryl'), EVENT,
                                 window=(-0.1, 0.3), bin_size=0.05, by=['contrastLeft', 'choice'])
    got = pd.read_csv(tmp_path / 'p.csv')
    assert len(got) == len(expected) and list(got.columns) == list(expected.columns)
    np.testing.assert_array_equal(got['spike_count'], expected['spike_count'])
    r = _cli('psth', str(folder), '--event', EVENT, '-o', str(tmp_path / 'p.parquet'))
    assert r.returncode == 0 and len(pd.read_parquet(tmp_path / 'p.parquet'))
    r = _cli('psth', str(folder), '--event', 'nothing_times', '-o', str(tmp_path / 'x.csv'))
    assert r.returncode == 1 and "no event column 'nothing_times'" in r.stderr
    pngs = []
    for name in ('a.png', 'b.png'):
        r = _cli('plot', 'psth', str(folder), '--event', EVENT, '--mapping', 'Cosmos', '--by', 'contrastRight',
                 '-o', str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        pngs.append((tmp_path / name).read_bytes())
    assert pngs[0] == pngs[1]  # deterministic
    regions = alfnwb.read_units(folder)['cosmos_acronym'].nunique()
    ncols = min(4, regions)
    assert imread(tmp_path / 'a.png').shape[:2] == (int(round((2.4 * -(-regions // ncols) + 0.8) * 100)),
                                                    int(round(3.2 * ncols * 100)))
    r = _cli('info', str(folder / 'a.nwb'))
    assert r.returncode == 0 and 'ephysChoiceWorld' in r.stdout and ' trials' in r.stdout


def test_files_with_trials_pass_nwbinspector(folder):
    from nwbinspector import Importance, inspect_nwbfile

    messages = list(inspect_nwbfile(nwbfile_path=str(folder / 'a.nwb')))
    assert not [m for m in messages if m.importance == Importance.CRITICAL]
    on_trials = [m for m in messages if 'trials' in str(m.location) or 'TimeIntervals' in str(m.object_type)]
    assert not [m for m in on_trials if m.importance == Importance.BEST_PRACTICE_VIOLATION], on_trials
