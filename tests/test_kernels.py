"""The block-wise spike kernels: the same results whatever the block size and the order of simultaneous spikes."""

import dataclasses
import gc
import weakref

import numpy as np
import pandas as pd
import pytest

from alfnwb import extensions, kernels
from alfnwb.analyzer import ALF_EXTENSIONS, build_analyzer
from alfnwb.loading import load_probe
from alfnwb.nwb import analyzer as nwb_analyzer

FS = 30000.0


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 1000 spikes: every block-wise path crosses many block boundaries on a test probe."""
    for module in (kernels, extensions):
        monkeypatch.setattr(module, 'BLOCK', 1000)


def _with_ties(probe, descending: bool):
    """The probe with forced simultaneous spikes of different units, ordered by unit (or against it)."""
    sp = {k: np.asarray(v).copy() for k, v in probe.spikes.items()}
    samples, clusters = sp['samples'], sp['clusters'].astype(np.int64)
    # every 50th spike moves onto its predecessor's sample when their units differ: times stay sorted
    k = np.arange(1, samples.size, 50)
    k = k[clusters[k] != clusters[k - 1]]
    samples[k] = samples[k - 1]
    sp['times'][k] = sp['times'][k - 1]
    order = np.lexsort((-clusters if descending else clusters, samples))
    spikes = {name: v[order] for name, v in sp.items()}
    return dataclasses.replace(probe, spikes=spikes), k.size


def test_stable_order_in_blocks_is_argsort(small_blocks):
    rng = np.random.default_rng(0)
    for n, labels in ((10_500, 7), (10_500, 300), (10_500, 70_000), (999, 5), (0, 3)):
        x = rng.integers(0, labels, n).astype(np.uint32)
        got = kernels.stable_order(x, labels)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, np.argsort(x, kind='stable'))


def test_ties_out_of_unit_order_give_the_same_analyzer(synth, one_plain, small_blocks):
    """ALF spikes in spike-vector order are used as they are; simultaneous spikes out of unit order take
    the sorting path: both analyzers hold the same extensions, equal to SpikeInterface's numbers."""
    from spikeinterface.postprocessing import compute_correlograms
    from spikeinterface.postprocessing.isi import compute_isi_histograms_numpy

    probe = load_probe(one_plain, synth.sessions[0].probes[0].pid)
    in_order, n_ties = _with_ties(probe, descending=False)
    against, _ = _with_ties(probe, descending=True)
    assert n_ties > 20 and probe.spikes['samples'].size > 5 * 1000  # blocks of 1000: many blocks
    assert kernels.in_vector_order(in_order.spikes['samples'], in_order.spikes['clusters'])
    assert not kernels.in_vector_order(against.spikes['samples'], against.spikes['clusters'])

    a, b = (build_analyzer(p, ALF_EXTENSIONS) for p in (in_order, against))
    vector = a.sorting.to_spike_vector()
    np.testing.assert_array_equal(vector, b.sorting.to_spike_vector())
    np.testing.assert_array_equal(vector['sample_index'], in_order.spikes['samples'])
    np.testing.assert_array_equal(vector['unit_index'], in_order.spikes['clusters'])
    # the probe's samples became the vector's (equal) column
    np.testing.assert_array_equal(in_order.spikes['samples'], against.spikes['samples'][
        np.lexsort((against.spikes['clusters'], against.spikes['samples']))])
    for name in ALF_EXTENSIONS:
        for key, value in a.get_extension(name).data.items():
            other = b.get_extension(name).data[key]
            if hasattr(value, 'columns'):  # quality metrics: a DataFrame
                pd.testing.assert_frame_equal(value, other)
            else:
                np.testing.assert_array_equal(value, other, err_msg=f'{name}.{key}')
    np.testing.assert_array_equal(a.get_extension('spike_amplitudes').get_data(),
                                  (-in_order.spikes['amps'] * 1e6).astype(np.float32))
    np.testing.assert_array_equal(a.get_extension('spike_locations').get_data()['y'], in_order.spikes['depths'])
    ccg, _ = compute_correlograms(a.sorting, window_ms=50.0, bin_ms=1.0)
    np.testing.assert_array_equal(a.get_extension('correlograms').get_data()[0], ccg)
    isi, _ = compute_isi_histograms_numpy(a.sorting, 50.0, 1.0)
    np.testing.assert_array_equal(a.get_extension('isi_histograms').get_data()[0], isi)
    assert isi.sum() > 1000 and ccg[np.eye(len(a.unit_ids), dtype=bool)].sum() > 1000


def test_rank_in_blocks(synth, one_plain, small_blocks):
    """The rank of chosen spikes in their unit's train (binary search in the by-unit order) is the plain count."""
    from pynwb.testing.mock.file import mock_NWBFile

    sa = build_analyzer(load_probe(one_plain, synth.sessions[0].probes[0].pid), ('random_spikes',))
    ctx = nwb_analyzer.WriteContext(mock_NWBFile(), sa, 0, 0, None)
    units = ctx.units
    chosen = np.random.default_rng(1).choice(units.size, 500, replace=False)  # unsorted on purpose
    expected = [int((units[:i] == units[i]).sum()) for i in chosen]
    np.testing.assert_array_equal(ctx.rank(chosen), expected)


@pytest.mark.parametrize('descending', [False, True], ids=['in_vector_order', 'ties_out_of_unit_order'])
def test_streamed_export_writes_what_the_analyzer_holds(synth, one_plain, small_blocks, monkeypatch, tmp_path,
                                                        descending):
    """The export's StreamedAnalyzer (no spike vector; per-spike rows and correlogram rows made while the file
    is written, compressed in parallel, a few rows a chunk) writes byte-equal datasets to the SpikeInterface
    analyzer's, with the numba correlogram kernel."""
    import h5py

    from alfnwb import extensions
    from alfnwb.export import build_nwbfile, hold_on_disk
    from alfnwb.extensions import StreamedAnalyzer
    from alfnwb.model import DiskColumn
    from alfnwb.nwb import chunks
    from alfnwb.nwb.io import write_nwbfile
    from alfnwb.loading import load_session

    class Kernel(kernels.CorrelogramRows):  # the numba path, however small the probe
        def __init__(self, *args, **kwargs):
            super().__init__(*args, max_numpy_pairs=-1, **kwargs)

    monkeypatch.setattr(extensions, 'CorrelogramRows', Kernel)
    monkeypatch.setattr(nwb_analyzer, 'ROW_CHUNK_BYTES', 1 << 14)  # a few units' rows a chunk
    monkeypatch.setattr(chunks, 'PARALLEL_MIN_BYTES', 1 << 12)
    session = load_session(one_plain, pid=synth.sessions[0].probes[0].pid)
    probe, _ = _with_ties(session.probes[0], descending=descending)
    session.probes = [probe]
    files = {}
    for stream in (False, True, 'on_disk'):
        if stream == 'on_disk':  # as a large probe's export: times, amps and depths in files, grouped by unit
            assert hold_on_disk(session, tmp_path, min_bytes=0) == [probe.provenance.pid]
        analyzer = build_analyzer(probe, ALF_EXTENSIONS, stream=bool(stream))
        assert isinstance(analyzer, StreamedAnalyzer) is bool(stream)
        if stream == 'on_disk':  # read from the files as the writer gathers them, in vector order only
            amplitudes = analyzer.get_extension('spike_amplitudes').data['amplitudes']
            assert isinstance(probe.spikes['amps'], DiskColumn)
            assert (amplitudes.grouped_by is probe.by_cluster()[0]) is not descending
        nwbfile = build_nwbfile(session, None, analyzers=[analyzer])
        if stream:
            assert isinstance(analyzer.get_extension('correlograms').data['ccgs'], Kernel)
            # as the export does: the arrays are in the NWBFile, the producers stay for the write
            dense = weakref.ref(analyzer.get_extension('templates').data['average'])
            nbytes = dense().nbytes
            assert analyzer.release_arrays() >= nbytes > 0
            gc.collect()
            assert dense() is None  # nothing else (the build's context) holds the dense templates
            assert 'average' not in analyzer.get_extension('templates').data
            assert isinstance(analyzer.get_extension('correlograms').data['ccgs'], Kernel)
            # samples and clusters held narrower through the write (the kernel reads them so); ALF dtypes in the file
            assert probe.spikes['samples'].dtype == np.int32 and probe.alf_dtype('samples') == np.int64
            assert probe.spikes['clusters'].dtype == np.uint16 and probe.alf_dtype('clusters') == np.uint32
            rows = analyzer.get_extension('correlograms').data['ccgs']
            assert (rows.samples.dtype, rows.units.dtype) == (np.int32, np.uint16)  # used as held, no copies
        files[stream] = write_nwbfile(nwbfile, tmp_path / f'{stream}.nwb')
    for other in (True, 'on_disk'):
        with h5py.File(files[False], 'r') as a, h5py.File(files[other], 'r') as b:
            group = f'processing/ecephys/{probe.provenance.probe}'
            names = []
            a[group].visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            assert {'extensions/correlograms/data', 'extensions/spike_amplitudes/data',
                    'extensions/spike_locations/data'} <= set(names)
            for name in names:
                x, y = a[group][name], b[group][name]
                if x.dtype.kind == 'O' or x.dtype.kind == 'S':
                    continue
                np.testing.assert_array_equal(x[()], y[()], err_msg=name)
            assert a['units/spike_samples'].dtype == b['units/spike_samples'].dtype == np.int64
            for name in ('spike_samples', 'spike_samples_index', 'spike_times', 'spike_amplitudes', 'spike_depths'):
                np.testing.assert_array_equal(a[f'units/{name}'][()], b[f'units/{name}'][()])
            ccg = b[f'{group}/extensions/correlograms/data']
            assert ccg.compression == 'gzip' and ccg.chunks[0] * 4 <= ccg.shape[0] and ccg[()].sum() > 1000


def test_peak_sample_in_unit_blocks_is_the_whole_arrays():
    """The templates' trough sample, found a block of units at a time, is the one of all units at once."""
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(200, 82, 384)).astype(np.float32)  # 66 units a block: 4 blocks
    troughs = rng.integers(20, 60, size=200)
    best = rng.integers(0, 384, size=200)
    dense[np.arange(200), troughs, best] = -50.0
    dense[150:] = 0  # silent units are left out of the median
    whole_best = np.abs(dense).max(axis=1).argmax(axis=1)
    on_best = dense[np.arange(200), :, whole_best]
    alive = np.abs(on_best).max(axis=1) > 0
    expected = int(np.median(np.abs(on_best[alive]).argmax(axis=1)))
    assert extensions._peak_sample(dense) == expected == int(np.median(troughs[:150]))
