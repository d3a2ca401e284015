"""SortingAnalyzer extensions: built from ALF, written with ndx-spikesorting, read back losslessly."""

import copy
import dataclasses

import h5py
import numpy as np
import pytest

from alfnwb.analyzer import ALF_EXTENSIONS, RAW_EXTENSIONS, build_analyzer, resolve_extensions
from alfnwb.errors import AlfNwbError, NWBReadError
from alfnwb.export import build_nwbfile, export
from alfnwb.loading import load_probe, load_session
from alfnwb.nwb.io import write_nwbfile
from alfnwb.readback import read_sorting_analyzer

FS = 30000.0


def _alf_sorting(probe):
    from spikeinterface.core import NumpySorting

    return NumpySorting.from_samples_and_labels([np.asarray(probe.spikes['samples'])],
                                                [np.asarray(probe.spikes['clusters']).astype(np.int64)], FS,
                                                unit_ids=np.arange(probe.n_clusters))


def test_resolve_extensions():
    assert resolve_extensions(None) == resolve_extensions('default')
    assert set(resolve_extensions('default')) == set(ALF_EXTENSIONS)
    assert set(resolve_extensions('default', raw=True)) == set(ALF_EXTENSIONS + RAW_EXTENSIONS)
    # IBL's waveforms.* give the waveform extensions on request only; 'default' and 'all' combine with names
    assert set(resolve_extensions('default', waveforms=True)) == set(ALF_EXTENSIONS)
    assert set(resolve_extensions('all', waveforms=True)) == set(ALF_EXTENSIONS) | {'waveforms', 'principal_components'}
    assert set(resolve_extensions('default,principal_components', waveforms=True)) == set(ALF_EXTENSIONS) | {
        'waveforms', 'principal_components'}
    assert resolve_extensions('none') == ()
    # dependencies are added, build order puts parents first
    assert resolve_extensions('template_similarity') == ('templates', 'template_similarity')
    assert resolve_extensions('principal_components', raw=True) == ('random_spikes', 'waveforms',
                                                                    'principal_components')
    with pytest.raises(AlfNwbError, match='unknown extension.*bogus'):
        resolve_extensions('correlograms,bogus')
    with pytest.raises(AlfNwbError, match='waveforms need the raw data'):
        resolve_extensions('waveforms')


@pytest.mark.parametrize('probe_index', [0, 1])
def test_analyzer_read_back_equals_alf(synth, one_plain, session_export, probe_index):
    """Per probe of a two-probe session: every stored extension equals its ALF source or SI's own result."""
    from spikeinterface.postprocessing import compute_correlograms
    from spikeinterface.postprocessing.isi import compute_isi_histograms_numpy

    truth = synth.sessions[0].probes[probe_index]
    probe = load_probe(one_plain, truth.pid)
    sa = read_sorting_analyzer(session_export.path, probe=truth.name)
    n, nch = probe.n_clusters, probe.n_channels
    assert set(sa.extensions) == set(ALF_EXTENSIONS)
    np.testing.assert_array_equal(sa.unit_ids, np.arange(n))
    np.testing.assert_array_equal(sa.channel_ids, np.arange(nch))
    np.testing.assert_array_equal(sa.get_channel_locations()[:, 1], probe.channels['axial_um'])
    assert sa.sampling_frequency == FS

    # the sorting: exactly the ALF samples and clusters
    samples = np.asarray(probe.spikes['samples'])
    clusters = np.asarray(probe.spikes['clusters']).astype(np.int64)
    vector = sa.sorting.to_spike_vector()
    order = np.lexsort((clusters, samples))
    np.testing.assert_array_equal(vector['sample_index'], samples[order])
    np.testing.assert_array_equal(vector['unit_index'], clusters[order])

    # templates: the ALF waveforms in uV on the waveformsChannels, zero elsewhere
    dense = sa.get_extension('templates').get_data()
    wf, wfc = probe.clusters['waveforms'], probe.clusters['waveformsChannels']
    units = np.arange(n)[:, None]
    np.testing.assert_allclose(dense[units, :, wfc], np.swapaxes(wf, 1, 2) * 1e6, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(dense) == np.count_nonzero(wf)
    assert sa.get_extension('templates').nbefore == 42  # the synthetic trough
    np.testing.assert_array_equal(sa.sparsity.mask.sum(axis=1), wfc.shape[1])

    # amplitudes (uV, negative) and locations, per spike in spike-vector order
    amps = sa.get_extension('spike_amplitudes').get_data()
    assert amps.dtype == np.float32
    np.testing.assert_allclose(amps, -probe.spikes['amps'][order] * 1e6, rtol=1e-6)
    loc = sa.get_extension('spike_locations').get_data()
    np.testing.assert_array_equal(loc['y'], probe.spikes['depths'][order].astype(np.float32))
    ul = sa.get_extension('unit_locations').get_data()
    np.testing.assert_array_equal(ul[:, 1], probe.clusters['depths'])
    np.testing.assert_allclose(loc['x'], ul[vector['unit_index'], 0].astype(np.float32))
    lateral = probe.channels['lateral_um']
    assert np.all((ul[:, 0] >= lateral.min()) & (ul[:, 0] <= lateral.max()))

    # computed extensions equal SpikeInterface's own computation on the ALF sorting
    ccg, bins = sa.get_extension('correlograms').get_data()
    ccg_si, bins_si = compute_correlograms(_alf_sorting(probe), window_ms=50.0, bin_ms=1.0)
    np.testing.assert_array_equal(ccg, ccg_si)
    np.testing.assert_array_equal(bins, bins_si)
    assert ccg.sum() > 0
    isi, isi_bins = sa.get_extension('isi_histograms').get_data()
    isi_si, isi_bins_si = compute_isi_histograms_numpy(_alf_sorting(probe), window_ms=50.0, bin_ms=1.0)
    np.testing.assert_array_equal(isi, isi_si)
    np.testing.assert_array_equal(isi_bins, isi_bins_si)

    # IBL metrics are the quality metrics
    qm = sa.get_extension('quality_metrics').get_data()
    for col in ('label', 'amp_median', 'firing_rate', 'slidingRP_viol', 'ks2_label'):
        np.testing.assert_array_equal(qm[col].to_numpy(), probe.clusters['metrics'][col].to_numpy(), err_msg=col)

    # random spikes: at most 100 per unit, each inside its unit, the same as at export time
    rs = sa.get_extension('random_spikes').get_data()
    exported = build_analyzer(probe, ('random_spikes',))
    np.testing.assert_array_equal(rs, exported.get_extension('random_spikes').get_data())
    per_unit = np.bincount(vector['unit_index'][rs], minlength=n)
    np.testing.assert_array_equal(per_unit, np.minimum(np.bincount(clusters, minlength=n), 100))


def test_template_similarity_equals_spikeinterface(synth, session_export, monkeypatch):
    from spikeinterface.postprocessing import template_similarity

    # SpikeInterface's own numpy version of its similarity kernel (the numba one, the same numbers, is
    # compiled anew in each process: ~15 s); private name, spikeinterface 0.105
    monkeypatch.setattr(template_similarity, '_compute_similarity_matrix',
                        template_similarity._compute_similarity_matrix_numpy)
    sa = read_sorting_analyzer(session_export.path, probe='probe00')
    stored = sa.get_extension('template_similarity').get_data().copy()
    sa.compute('template_similarity', method='cosine', max_lag_ms=0, support='union')
    np.testing.assert_allclose(stored, sa.get_extension('template_similarity').get_data(), atol=1e-5)
    assert stored.shape == (len(sa.unit_ids),) * 2 and np.any((stored > 0.2) & (stored < 0.99))


def test_correlograms_numpy_and_numba_paths_equal_spikeinterface():
    """Small probes take the numpy path (no numba kernel to load), large ones the numba kernel: the same counts."""
    import spikeinterface.core as si
    from spikeinterface.postprocessing import compute_correlograms

    from alfnwb.kernels import CorrelogramRows, correlograms, spike_vector

    rng = np.random.default_rng(2)
    samples = np.sort(rng.integers(0, 30000 * 60, 20000))
    samples[5:9] = samples[5]  # simultaneous spikes
    samples[100] = samples[99] + 1500  # a pair exactly one window apart (50 ms)
    samples = np.sort(samples)
    units = rng.integers(0, 25, samples.size)
    vector = spike_vector(samples, units)[0]
    sorting = si.NumpySorting(vector, 30000.0, unit_ids=np.arange(25))
    for window_ms, bin_ms in ((50.0, 1.0), (20.0, 0.7)):
        columns = vector['sample_index'], vector['unit_index']
        small, bins = correlograms(*columns, 25, 30000.0, window_ms, bin_ms)
        large, _ = correlograms(*columns, 25, 30000.0, window_ms, bin_ms, max_numpy_pairs=-1)
        theirs, their_bins = compute_correlograms(sorting, window_ms=window_ms, bin_ms=bin_ms)
        rows = CorrelogramRows(*columns, 25, 30000.0, window_ms, bin_ms, max_numpy_pairs=-1)
        np.testing.assert_array_equal(np.concatenate([rows.read(a, a + 7) for a in range(0, 25, 7)]), large)
        np.testing.assert_array_equal(small, large)
        np.testing.assert_array_equal(small, theirs)
        # int32 samples, uint16 units (as a streamed export holds them): the same counts on both paths, near 2**31 too
        narrow = vector['sample_index'].astype(np.int32)
        for shift in (0, np.iinfo(np.int32).max - int(narrow[-1])):
            for pairs in (2_000_000, -1):
                got, _ = correlograms(narrow + np.int32(shift), vector['unit_index'].astype(np.uint16), 25, 30000.0,
                                      window_ms, bin_ms, max_numpy_pairs=pairs)
                np.testing.assert_array_equal(got, theirs)
        np.testing.assert_array_equal(bins, their_bins)
        assert small.sum() > 10000


def test_random_spikes_and_isi_equal_spikeinterface(synth, session_export, one_plain):
    """alfnwb's kernels (no per-process numba compile) give SpikeInterface's exact numbers."""
    from spikeinterface.core.sorting_tools import random_spikes_selection
    from spikeinterface.postprocessing.isi import compute_isi_histograms_numpy

    sa = read_sorting_analyzer(session_export.path, probe='probe00')
    for seed, most in ((0, 100), (3, 7)):  # the file's choice, and another seed and size
        ours = build_analyzer(load_probe(one_plain, synth.sessions[0].probes[0].pid), ('random_spikes',),
                              extension_params={
                                  'random_spikes': {'method': 'uniform', 'max_spikes_per_unit': most, 'seed': seed}})
        theirs = random_spikes_selection(ours.sorting, method='uniform', max_spikes_per_unit=most, seed=seed)
        np.testing.assert_array_equal(ours.get_extension('random_spikes').get_data(), theirs)
    np.testing.assert_array_equal(sa.get_extension('random_spikes').get_data(),
                                  random_spikes_selection(sa.sorting, method='uniform', max_spikes_per_unit=100,
                                                          seed=0))
    counts, bins = sa.get_extension('isi_histograms').get_data()
    expected, expected_bins = compute_isi_histograms_numpy(sa.sorting, 50.0, 1.0)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_allclose(bins, expected_bins)
    assert counts.sum() > 1000


def test_regions_point_at_the_probe_rows(synth, session_export):
    """Each container's units/electrodes regions select its own probe's rows of the shared tables."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(session_export.path, 'r') as io:
        nwb = io.read()
        units = nwb.units.to_dataframe(exclude={'spike_times', 'spike_amplitudes', 'spike_depths', 'spike_samples',
                                                'waveform_mean', 'electrodes'})
        electrodes = nwb.electrodes.to_dataframe()
        for truth in synth.sessions[0].probes:
            c = nwb.processing['ecephys'][truth.name]
            rows = np.asarray(c.units_region.data[:])
            assert set(units['probe_name'].iloc[rows]) == {truth.name}
            np.testing.assert_array_equal(units['cluster_id'].iloc[rows], np.arange(rows.size))
            assert rows.size == int((units['probe_name'] == truth.name).sum())
            erows = np.asarray(c.electrodes.data[:])
            assert set(electrodes['probe_name'].iloc[erows]) == {truth.name}
            np.testing.assert_array_equal(electrodes['channel_index'].iloc[erows], np.arange(384))
            t = c.spike_sorting_extensions.templates
            assert set(electrodes['probe_name'].iloc[np.asarray(t.electrodes.data[:])]) == {truth.name}
            qm = c.spike_sorting_extensions.units_metrics['quality_metrics']
            np.testing.assert_array_equal(np.asarray(qm['unit'].data[:]), rows)


def test_per_spike_data_in_spike_times_order(session_export):
    """Stored amplitudes follow each unit's spike_times: equal, element by element, to the units column."""
    with h5py.File(session_export.path, 'r') as f:
        u = f['units']
        for name in ('probe00', 'probe01'):
            rows = f[f'processing/ecephys/{name}/units_region'][:]
            idx = u['spike_amplitudes_index'][:]
            a, b = (idx[rows[0] - 1] if rows[0] else 0), idx[rows[-1]]
            units_v = u['spike_amplitudes'][a:b]
            ext = f[f'processing/ecephys/{name}/extensions/spike_amplitudes']
            np.testing.assert_allclose(ext['data'][:], -units_v * 1e6, rtol=1e-6)
            np.testing.assert_array_equal(ext['data_index'][:], idx[rows] - a)
            depths = u['spike_depths'][a:b]
            np.testing.assert_array_equal(f[f'processing/ecephys/{name}/extensions/spike_locations/data'][:, 1],
                                          depths.astype(np.float32))


def test_ties_keep_alf_order(synth, one_plain, tmp_path):
    """Spikes on the same sample (across and within units) keep their order: no unstable sort anywhere."""
    probe = load_probe(one_plain, synth.sessions[0].probes[0].pid)
    coarse = (np.asarray(probe.spikes['samples']) // 600) * 600  # 20 ms grid: many ties
    order = np.argsort(coarse, kind='stable')
    spikes = {k: np.asarray(v)[order] for k, v in probe.spikes.items()}
    spikes['samples'] = coarse[order]
    spikes['times'] = spikes['samples'] / FS
    tied = dataclasses.replace(probe, spikes=spikes)
    u = spikes['clusters'].astype(np.int64)
    assert np.any((np.diff(spikes['samples']) == 0) & (np.diff(u) == 0))  # ties within a unit
    session = copy.copy(load_session(one_plain, pid=probe.provenance.pid))
    session.probes = [tied]
    analyzer = build_analyzer(tied, ('spike_amplitudes',))
    path = write_nwbfile(build_nwbfile(session, None, analyzers=[analyzer]), tmp_path / 'ties.nwb')
    back = read_sorting_analyzer(path)
    np.testing.assert_array_equal(back.get_extension('spike_amplitudes').get_data(),
                                  analyzer.get_extension('spike_amplitudes').get_data())
    np.testing.assert_array_equal(back.sorting.to_spike_vector(), analyzer.sorting.to_spike_vector())
    with h5py.File(path, 'r') as f:
        stored = f['processing/ecephys/probe00/extensions/spike_amplitudes/data'][:]
        np.testing.assert_allclose(stored, -f['units/spike_amplitudes'][:] * 1e6, rtol=1e-6)


def test_extension_subset_and_none(synth, one_plain, tmp_path):
    pid = synth.sessions[1].probes[0].pid
    r = export(one_plain, tmp_path / 'ccg.nwb', pid=pid, extensions='correlograms')
    sa = read_sorting_analyzer(r.path)
    assert list(sa.extensions) == ['correlograms']
    r = export(one_plain, tmp_path / 'none.nwb', pid=pid, extensions='none')
    with pytest.raises(NWBReadError, match='SortingAnalyzer containers none'):
        read_sorting_analyzer(r.path)
    with h5py.File(r.path, 'r') as f:
        assert 'spike_samples' in f['units']
        assert [k for k in f['processing/ecephys']] == ['alfnwb_provenance']
    with pytest.raises(NWBReadError, match="no SortingAnalyzer for probe 'probe07'"):
        read_sorting_analyzer(tmp_path / 'ccg.nwb', probe='probe07')
