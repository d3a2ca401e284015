"""IBL's extracted waveforms (waveforms.*): synthesised by IBL's code, loaded, turned into analyzer
extensions without the raw band, stored as published and read back."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import alfnwb
from alfnwb.analyzer import WAVEFORM_EXTENSIONS, build_analyzer
from alfnwb.errors import InvalidDataError
from alfnwb.export import export
from alfnwb.loading import load_probe


def _loader(probe_truth):
    """IBL's own reader on the files (independent of alfnwb's loading)."""
    from ibldsp.waveform_extraction import WaveformsLoader

    s = probe_truth.default_sorting
    folder = probe_truth.raw_path.parents[2] / s.collection / (f'#{s.revision}#' if s.revision else '')
    return WaveformsLoader(folder)


@pytest.fixture(scope='module')
def wf_export(raw_synth, tmp_path_factory):
    from one.api import One

    one = One(cache_dir=raw_synth.cache_dir, mode='local')
    return export(one, tmp_path_factory.mktemp('wfexport') / 'wf.nwb', eid=raw_synth.sessions[0].eid,
                  extensions='default,waveforms,principal_components',
                  extension_params={'random_spikes': {'max_spikes_per_unit': 1000}})


def test_synthetic_waveforms_in_ibl_format(raw_synth):
    dsets = pd.read_parquet(raw_synth.cache_dir / 'datasets.pqt')
    for p in raw_synth.sessions[0].probes:
        s = p.default_sorting
        names = dsets['rel_path'][dsets['rel_path'].str.startswith(s.collection + '/')]
        assert sum('/waveforms.' in n for n in names) == 4
        wl = _loader(p)
        assert wl.data_version == 2  # the only layout the installed ibl-neuropixel writes
        assert wl.traces.shape[1:] == wl.templates.shape[1:] and wl.traces.shape[-1] == 128


@pytest.mark.parametrize('index', [0, 1])
def test_extensions_from_ibl_waveforms(raw_synth, index):
    from one.api import One

    truth = raw_synth.sessions[0].probes[index]
    one = One(cache_dir=raw_synth.cache_dir, mode='local')
    probe = load_probe(one, truth.pid)
    assert probe.provenance.waveforms == 'waveforms.* v2 (flat)'
    assert not set(WAVEFORM_EXTENSIONS) & set(build_analyzer(probe).extensions)  # not in the default: GB per probe
    an = build_analyzer(probe, 'all', extension_params={'random_spikes': {'max_spikes_per_unit': 1000}})
    assert set(WAVEFORM_EXTENSIONS) <= set(an.extensions)
    wl = _loader(truth)
    table, traces, channels = wl.df_wav, np.asarray(wl.traces), wl.channels

    # random spikes: exactly the spikes IBL extracted, matched by cluster and sample
    vec = an.sorting.to_spike_vector()
    pos = {(int(u), int(s)): i for i, (s, u) in enumerate(zip(vec['sample_index'], vec['unit_index']))}
    expected = sorted(pos[(int(c), int(s))] for c, s in zip(table['cluster'], table['sample']))
    np.testing.assert_array_equal(an.get_extension('random_spikes').get_data(), expected)

    # waveforms: IBL's traces in uV on each unit's sparse channels (channel i = raw channel i here)
    row_of = {(int(c), int(s)): i for i, (c, s) in enumerate(zip(table['cluster'], table['sample']))}
    wf = an.get_extension('waveforms').get_data()
    mask = an.sparsity.mask
    for k, spike in enumerate(expected[::7]):
        i = row_of[(int(vec['unit_index'][spike]), int(vec['sample_index'][spike]))]
        sparse = np.flatnonzero(mask[vec['unit_index'][spike]])
        cols = [list(channels[i]).index(c) for c in sparse]  # every sparse channel is covered: no invented value
        np.testing.assert_allclose(wf[expected.index(spike)][:, :sparse.size], traces[i][cols].T * 1e6, rtol=1e-6)

    # templates: SpikeInterface's average, std and median of these waveforms
    t = an.get_extension('templates')
    for unit in np.unique(table['cluster'])[:4]:
        w = an.get_extension('waveforms').get_waveforms_one_unit(unit, force_dense=False)
        n = mask[unit].sum()
        np.testing.assert_allclose(t.get_unit_template(unit, 'average')[:, mask[unit]], w[:, :, :n].mean(0), atol=1e-3)
        np.testing.assert_allclose(t.get_unit_template(unit, 'std')[:, mask[unit]], w[:, :, :n].std(0), atol=1e-3)
        np.testing.assert_allclose(t.get_unit_template(unit, 'median')[:, mask[unit]], np.median(w[:, :, :n], 0),
                                   atol=1e-3)
    assert an.get_extension('principal_components').get_data().shape[0] == len(expected)


def test_round_trip_of_waveforms_is_exact(raw_synth, wf_export):
    for truth in raw_synth.sessions[0].probes:
        wl = _loader(truth)
        back = alfnwb.read_alf_object(wf_export.path, truth.name, 'waveforms')
        np.testing.assert_array_equal(back['traces'], np.asarray(wl.traces))
        np.testing.assert_array_equal(back['templates'], wl.templates)
        np.testing.assert_array_equal(back['channels'], wl.channels)
        pd.testing.assert_frame_equal(back['table'], wl.df_wav)
        an = alfnwb.read_sorting_analyzer(wf_export.path, truth.name)
        assert {'waveforms', 'principal_components', 'random_spikes', 'templates'} <= set(an.extensions)
        assert an.get_extension('waveforms').get_data().shape[1] == 128


def test_units_waveform_mean_is_the_real_mean(raw_synth, wf_export):
    truth = raw_synth.sessions[0].probes[0]
    wl = _loader(truth)
    table, traces, channels = wl.df_wav, np.asarray(wl.traces), wl.channels
    with h5py.File(wf_export.path, 'r') as f:
        u = f['units']
        probe_rows = np.flatnonzero(u['probe_name'][:].astype(str) == truth.name)
        ends = u['electrodes_index'][:]
        for unit in np.unique(table['cluster'])[:3]:
            row = probe_rows[unit]
            el = u['electrodes'][ends[row - 1] if row else 0:ends[row]]  # electrodes rows = channels of probe00
            sel = np.flatnonzero(table['cluster'].to_numpy() == unit)
            x = np.full((sel.size, el.size, 128), np.nan)
            for j, i in enumerate(sel):
                for k, ch in enumerate(el):
                    if ch in channels[i]:
                        x[j, k] = traces[i, list(channels[i]).index(ch)]
            np.testing.assert_allclose(u['waveform_mean'][row], np.nanmean(x, 0).T * 1e6, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(u['waveform_sd'][row], np.nanstd(x, 0).T * 1e6, rtol=1e-4, atol=1e-3)
        clusters = truth.default_sorting.clusters
        assert u['sorter_template'].shape[1:] == (clusters['waveforms'].shape[1], 32)
    spikes, cl, _ = alfnwb.read_alf(wf_export.path, truth.name)
    np.testing.assert_allclose(cl['waveforms'], clusters['waveforms'], rtol=1e-6, atol=1e-12)


def test_insertion_without_waveforms_as_before(synth, session_export):
    from one.api import One

    probe = load_probe(One(cache_dir=synth.cache_dir, mode='local'), synth.sessions[0].probes[0].pid)
    assert probe.waveforms is None and probe.provenance.waveforms == ''
    with h5py.File(session_export.path, 'r') as f:
        assert 'waveform_mean' in f['units'] and 'sorter_template' not in f['units']
        assert not any(k.endswith('_waveforms') for k in f['processing/ecephys'])
    with pytest.raises(alfnwb.errors.NWBReadError, match='no waveforms object'):
        alfnwb.read_alf_object(session_export.path, 'probe00', 'waveforms')


@pytest.mark.parametrize('defect', ['table', 'traces', 'channels'])
def test_corrupt_waveforms_one_line_error(raw_synth, tmp_path, defect):
    from one.api import One

    cache = tmp_path / 'cache'
    shutil.copytree(raw_synth.cache_dir, cache)
    truth = raw_synth.sessions[0].probes[1]
    s = truth.default_sorting
    folder = cache / truth.raw_path.parents[2].relative_to(raw_synth.cache_dir) / s.collection
    if defect == 'table':
        t = pd.read_parquet(folder / 'waveforms.table.pqt')
        t.loc[3, 'sample'] += 1
        t.to_parquet(folder / 'waveforms.table.pqt')
    elif defect == 'traces':
        np.save(folder / 'waveforms.traces.npy', np.load(folder / 'waveforms.traces.npy')[:-1])
    else:
        np.savez(folder / 'waveforms.channels.npz', channels=np.load(folder / 'waveforms.channels.npz')['channels'][:, :3])
    with pytest.raises(InvalidDataError) as e:
        load_probe(One(cache_dir=cache, mode='local'), truth.pid)
    msg = str(e.value)
    assert '\n' not in msg and 'waveforms' in msg and truth.pid in msg


V1 = Path(__file__).resolve().parent / 'data' / 'waveforms_v1'


@pytest.fixture(scope='module')
def v1_cache(raw_synth, tmp_path_factory):
    """The raw cache with probe00's waveforms.* replaced by IBL's per-cluster (version 1) files of the same data."""
    cache = tmp_path_factory.mktemp('v1') / 'cache'
    shutil.copytree(raw_synth.cache_dir, cache)
    truth = raw_synth.sessions[0].probes[0]
    s = truth.default_sorting
    folder = cache / truth.raw_path.parents[2].relative_to(raw_synth.cache_dir) / s.collection / f'#{s.revision}#'
    for f in V1.glob('waveforms.*'):
        shutil.copy(f, folder / f.name)
    return cache, truth


def test_per_cluster_layout(v1_cache, tmp_path):
    from ibldsp.waveform_extraction import WaveformsLoader
    from one.api import One

    cache, truth = v1_cache
    one = One(cache_dir=cache, mode='local')
    probe = load_probe(one, truth.pid)
    assert probe.provenance.waveforms == 'waveforms.* v1 (per cluster)'
    wl = WaveformsLoader(V1)
    assert wl.data_version == 1 and wl.df_wav['sample'].isna().sum() == 15  # clusters with fewer than 8
    an = build_analyzer(probe, 'all')
    vec = an.sorting.to_spike_vector()
    pos = {(int(u), int(s)): i for i, (s, u) in enumerate(zip(vec['sample_index'], vec['unit_index']))}
    valid = wl.df_wav['sample'].notna().to_numpy()
    expected = sorted(pos[(int(c), int(s))] for c, s in zip(wl.df_wav['cluster'][valid], wl.df_wav['sample'][valid]))
    np.testing.assert_array_equal(an.get_extension('random_spikes').get_data(), expected)
    traces = np.asarray(wl.traces).reshape(-1, 40, 128)[valid]
    assert an.get_extension('waveforms').get_data().shape == (len(expected), 128, 32)
    assert np.isfinite(an.get_extension('waveforms').get_data()).all()
    spike = expected[0]
    row = next(i for i, (c, s) in enumerate(zip(wl.df_wav['cluster'][valid], wl.df_wav['sample'][valid]))
               if (int(c), int(s)) == (int(vec['unit_index'][spike]), int(vec['sample_index'][spike])))
    sparse = np.flatnonzero(an.sparsity.mask[vec['unit_index'][spike]])
    ch = list(wl.channels[valid][row])
    np.testing.assert_allclose(an.get_extension('waveforms').get_data()[0][:, :sparse.size],
                               traces[row][[ch.index(c) for c in sparse]].T * 1e6, rtol=1e-6)

    out = export(one, tmp_path / 'v1.nwb', pid=truth.pid, extensions='all')
    back = alfnwb.read_alf_object(out.path, truth.name, 'waveforms')
    np.testing.assert_array_equal(back['traces'], np.asarray(wl.traces))
    np.testing.assert_array_equal(back['templates'], wl.templates)
    np.testing.assert_array_equal(back['channels'], wl.channels)
    assert back['channels'].dtype == wl.channels.dtype
    pd.testing.assert_frame_equal(back['table'], wl.df_wav)


@pytest.mark.slow
def test_spikeinterface_gui_opens_the_read_back_analyzer(raw_synth, wf_export, tmp_path, monkeypatch):
    """spikeinterface-gui's main window (Qt offscreen) on read_sorting_analyzer, with the waveform views."""
    pytest.importorskip('spikeinterface_gui')
    monkeypatch.setenv('QT_QPA_PLATFORM', 'offscreen')
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path))
    from spikeinterface_gui import run_mainwindow

    analyzer = alfnwb.read_sorting_analyzer(wf_export.path, raw_synth.sessions[0].probes[0].name)
    win = run_mainwindow(analyzer, mode='desktop', with_traces=False, start_app=False)
    assert {'waveform', 'waveformheatmap', 'maintemplate', 'ndscatter', 'spikeamplitude', 'correlogram',
            'probe', 'unitlist', 'similarity'} <= set(win.views)
    assert not win.grab().isNull()
    win.close()
