"""A SpikeInterface ``SortingAnalyzer`` built from one probe's ALF spike sorting.

What ALF already holds is injected, not recomputed: ``templates`` (``clusters.waveforms``),
``spike_amplitudes`` (``spikes.amps``), ``spike_locations`` (``spikes.depths``),
``unit_locations`` (``clusters.depths``) and ``quality_metrics`` (``clusters.metrics``). What needs
only the sorting or the templates is computed by SpikeInterface: ``random_spikes``,
``correlograms``, ``isi_histograms``, ``template_similarity``. With the raw AP band at hand,
``waveforms``, ``noise_levels`` and ``principal_components`` are computed from the traces.

The analyzer is in memory and knows no NWB: :mod:`alfnwb.nwb.analyzer` writes it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import AlfNwbError, InvalidDataError
from .model import ProbeData

__all__ = ['ALF_EXTENSIONS', 'RAW_EXTENSIONS', 'DEFAULT_EXTENSIONS', 'EXTENSION_SOURCES', 'DEFAULT_PARAMS',
           'resolve_extensions', 'build_analyzer', 'open_raw_recording', 'probe_sampling_frequency']

FS = 30000.0

#: Extensions available from the ALF files alone, in the order they are built.
ALF_EXTENSIONS = ('random_spikes', 'templates', 'spike_amplitudes', 'spike_locations', 'unit_locations',
                  'correlograms', 'isi_histograms', 'template_similarity', 'quality_metrics')
#: Extensions that need the raw AP band (``--raw``).
RAW_EXTENSIONS = ('waveforms', 'noise_levels', 'principal_components')
#: Written when nothing is asked: everything that ALF alone gives (plus the raw ones with ``--raw``).
DEFAULT_EXTENSIONS = ALF_EXTENSIONS

#: Where each extension comes from (shown by ``alfnwb info`` and in the docs).
EXTENSION_SOURCES = {
    'random_spikes': 'computed (SpikeInterface, uniform, seeded)',
    'templates': 'ALF clusters.waveforms (uV)',
    'spike_amplitudes': 'ALF spikes.amps (uV, negative)',
    'spike_locations': 'ALF spikes.depths + template centre of mass (um)',
    'unit_locations': 'ALF clusters.depths + template centre of mass (um)',
    'correlograms': 'computed (alfnwb kernel equal to SpikeInterface\'s)',
    'isi_histograms': 'computed (SpikeInterface)',
    'template_similarity': 'computed (SpikeInterface, from the ALF templates)',
    'quality_metrics': 'ALF clusters.metrics (IBL names)',
    'waveforms': 'computed from the raw AP band',
    'noise_levels': 'computed from the raw AP band (uV)',
    'principal_components': 'computed from the raw waveforms',
}

#: Parent extensions each extension needs (SpikeInterface's dependencies, as alfnwb builds them).
_DEPENDS = {
    'template_similarity': ('templates',),
    'waveforms': ('random_spikes',),
    'principal_components': ('random_spikes', 'waveforms'),
}

#: SpikeInterface parameters used for the computed extensions (override with ``extension_params``).
DEFAULT_PARAMS = {
    'random_spikes': {'method': 'uniform', 'max_spikes_per_unit': 100, 'seed': 0},
    'correlograms': {'window_ms': 50.0, 'bin_ms': 1.0},
    'isi_histograms': {'window_ms': 50.0, 'bin_ms': 1.0},
    'template_similarity': {'method': 'cosine'},
    'waveforms': {'ms_before': 1.0, 'ms_after': 2.0},
    'noise_levels': {'random_slices_kwargs': {'seed': 0}},  # seeded: the same data give the same file
    'principal_components': {'n_components': 5, 'mode': 'by_channel_local', 'whiten': True},
}


def resolve_extensions(spec: str | Iterable[str] | None, raw: bool = False) -> tuple[str, ...]:
    """The extensions to build, in build order, dependencies included.

    Parameters
    ----------
    spec : str or iterable of str or None
        ``None`` or ``'default'``: :data:`DEFAULT_EXTENSIONS` (and the raw ones if ``raw``);
        ``'all'``: every extension the data allows; ``'none'``: nothing; otherwise names,
        as a list or comma-separated.
    raw : bool
        Whether the raw AP band is used. Raw-only extensions without it are an error.

    Returns
    -------
    tuple of str
    """
    order = RAW_EXTENSIONS[:1] + ALF_EXTENSIONS + RAW_EXTENSIONS[1:]
    if spec is None or spec == 'default':
        wanted = set(DEFAULT_EXTENSIONS) | (set(RAW_EXTENSIONS) if raw else set())
    elif spec == 'all':
        wanted = set(ALF_EXTENSIONS) | (set(RAW_EXTENSIONS) if raw else set())
    elif spec == 'none':
        return ()
    else:
        names = [s.strip() for s in (spec.split(',') if isinstance(spec, str) else spec) if s.strip()]
        unknown = [n for n in names if n not in order]
        if unknown:
            raise AlfNwbError(f'unknown extension(s) {", ".join(unknown)}; choose from all, none, default or '
                              f'{", ".join(ALF_EXTENSIONS + RAW_EXTENSIONS)}')
        wanted = set(names)
        need_raw = sorted(wanted & set(RAW_EXTENSIONS))
        if need_raw and not raw:
            raise AlfNwbError(f'extension(s) {", ".join(need_raw)} need the raw data: add --raw (raw=True)')
    for name in list(wanted):
        wanted |= set(_DEPENDS.get(name, ()))
    # build order: random spikes and waveforms first, as SpikeInterface deletes the children of an
    # extension it (re)computes
    build = ('random_spikes', 'waveforms', 'noise_levels', 'principal_components', 'templates',
             'spike_amplitudes', 'spike_locations', 'unit_locations', 'quality_metrics', 'correlograms',
             'isi_histograms', 'template_similarity')
    return tuple(n for n in build if n in wanted)


def probe_sampling_frequency(probe: ProbeData, recording=None) -> float:
    """Sampling frequency of the probe's sample clock (the raw file's when at hand, else 30 kHz)."""
    return float(recording.get_sampling_frequency()) if recording is not None else FS


def _spike_samples(probe: ProbeData, fs: float) -> np.ndarray:
    sp = probe.spikes
    if 'samples' in sp:
        return np.asarray(sp['samples']).astype(np.int64, copy=False)
    warnings.warn(f'insertion {probe.provenance.pid}: no spikes.samples; sample indices derived from spikes.times')
    return np.round(np.asarray(sp['times']) * fs).astype(np.int64)


def probegroup(lateral_um: np.ndarray, axial_um: np.ndarray, shank: np.ndarray, name: str = ''):
    """A probeinterface ProbeGroup of one probe: contact ids and device channels ``0..n-1``."""
    from probeinterface import Probe, ProbeGroup

    pos = np.c_[np.asarray(lateral_um, dtype=float), np.asarray(axial_um, dtype=float)]
    p = Probe(ndim=2, si_units='um', name=name)
    p.set_contacts(positions=pos, shapes='square', shape_params={'width': 12.0},
                   shank_ids=np.asarray(shank).astype(int).astype(str))
    p.set_contact_ids(np.arange(pos.shape[0]).astype(str))
    p.set_device_channel_indices(np.arange(pos.shape[0]))
    group = ProbeGroup()
    group.add_probe(p)
    return group


def _probegroup(probe: ProbeData):
    ch = probe.channels
    return probegroup(ch['lateral_um'], ch['axial_um'], ch['shank'], probe.provenance.probe)


def spike_vector(samples: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SpikeInterface's spike vector (ordered by sample, then unit) and the permutation that made it.

    ``np.lexsort`` is stable, so spikes of one unit keep their input order.
    """
    order = np.lexsort((units, samples))
    vector = np.zeros(samples.size, dtype=[('sample_index', 'int64'), ('unit_index', 'int64'),
                                           ('segment_index', 'int64')])
    vector['sample_index'] = samples[order]
    vector['unit_index'] = units[order]
    return vector, order


def memory_analyzer(vector: np.ndarray, fs: float, unit_ids: np.ndarray, channel_ids: np.ndarray, group,
                    mask: np.ndarray, num_samples: int, recording=None):
    """An in-memory SortingAnalyzer on a spike vector, with or without a recording."""
    from spikeinterface.core import ChannelSparsity, NumpySorting, SortingAnalyzer

    sorting = NumpySorting(vector, fs, unit_ids)
    rec_attributes = {
        'channel_ids': channel_ids, 'sampling_frequency': fs, 'num_channels': channel_ids.size,
        'num_samples': [int(num_samples)], 'is_filtered': True, 'properties': {}, 'dtype': np.dtype('float32'),
        'probegroup': group,
    }
    sparsity = ChannelSparsity(mask, unit_ids, channel_ids)
    return SortingAnalyzer.create_memory(sorting, recording, sparsity=sparsity, return_in_uV=True,
                                         peak_sign='neg', peak_mode='extremum', rec_attributes=rec_attributes,
                                         copy_sorting=False)


def ms_window(nbefore: int, n_samples: int, fs: float) -> tuple[float, float]:
    """ms_before/ms_after that give back exactly ``nbefore``/``nafter`` through ``int(ms * fs / 1000)``."""
    return (nbefore + 0.5) * 1000.0 / fs, (n_samples - nbefore + 0.5) * 1000.0 / fs


def template_channels(probe: ProbeData) -> np.ndarray | None:
    """``clusters.waveformsChannels`` as int64 (n_clusters, n_template_channels), or None."""
    wfc = probe.clusters.get('waveformsChannels')
    if wfc is None:
        return None
    wfc = np.asarray(wfc).astype(np.int64)
    if wfc.ndim != 2 or wfc.shape[0] != probe.n_clusters:
        return None
    return wfc


def sparsity_mask(probe: ProbeData, radius_um: float = 100.0) -> np.ndarray:
    """Channels of each unit: ``clusters.waveformsChannels``, else those within ``radius_um`` of the peak."""
    n, nch = probe.n_clusters, probe.n_channels
    wfc = template_channels(probe)
    mask = np.zeros((n, nch), dtype=bool)
    if wfc is not None:
        mask[np.arange(n)[:, None], wfc] = True
        return mask
    ch = probe.channels
    xy = np.c_[np.asarray(ch['lateral_um'], float), np.asarray(ch['axial_um'], float)]
    peak = np.asarray(probe.clusters['channels']).astype(np.int64)
    d = np.linalg.norm(xy[None, :, :] - xy[peak][:, None, :], axis=2)
    same_shank = np.asarray(ch['shank'])[None, :] == np.asarray(ch['shank'])[peak][:, None]
    return (d <= radius_um) & same_shank


def _dense_templates(probe: ProbeData) -> np.ndarray:
    """ALF templates, volts -> uV, dense (n_units, n_samples, n_channels) float32."""
    wf = probe.clusters.get('waveforms')
    wfc = template_channels(probe)
    if wf is None or wfc is None:
        raise InvalidDataError(f'insertion {probe.provenance.pid}: clusters.waveforms and '
                               'clusters.waveformsChannels are needed for the templates extension')
    wf = np.asarray(wf)
    if wf.ndim != 3 or wf.shape[0] != probe.n_clusters or wf.shape[2] != wfc.shape[1]:
        raise InvalidDataError(f'insertion {probe.provenance.pid}: clusters.waveforms has shape {wf.shape}, '
                               f'clusters.waveformsChannels {wfc.shape}')
    n, ns, _ = wf.shape
    dense = np.zeros((n, ns, probe.n_channels), dtype=np.float32)
    units = np.broadcast_to(np.arange(n)[:, None], wfc.shape)
    # advanced indices around a slice: the indexed result is (n, k, ns)
    dense[units, :, wfc] = np.swapaxes(wf, 1, 2).astype(np.float32) * np.float32(1e6)
    return dense


def _peak_sample(dense: np.ndarray) -> int:
    """The trough sample of the templates (median over units of the extremum on each unit's best channel)."""
    if dense.shape[0] == 0:
        return dense.shape[1] // 2
    best = np.abs(dense).max(axis=1).argmax(axis=1)
    on_best = dense[np.arange(dense.shape[0]), :, best]
    alive = np.abs(on_best).max(axis=1) > 0
    if not alive.any():
        return dense.shape[1] // 2
    return int(np.median(np.abs(on_best[alive]).argmax(axis=1)))


def _unit_x(probe: ProbeData, dense: np.ndarray | None) -> np.ndarray:
    """Lateral position of each unit: centre of mass of its template's peak-to-peak amplitudes."""
    lateral = np.asarray(probe.channels['lateral_um'], dtype=float)
    peak = np.asarray(probe.clusters['channels']).astype(np.int64)
    x = lateral[peak] if peak.size else np.zeros(0)
    if dense is None:
        return x
    ptp = np.ptp(dense, axis=1).astype(np.float64)  # (n_units, n_channels)
    w = ptp.sum(axis=1)
    com = (ptp @ lateral) / np.where(w > 0, w, 1)
    return np.where(w > 0, com, x)


def correlogram_bins(fs: float, window_ms: float, bin_ms: float) -> tuple[np.ndarray, int, int]:
    """Bin edges (ms), half window and bin size (samples), exactly as SpikeInterface makes them."""
    window = int(round(fs * window_ms / 2 * 1e-3))
    size = int(round(fs * bin_ms * 1e-3))
    window -= window % size
    if window < size:
        raise AlfNwbError(f'correlogram window {window_ms} ms holds no bin of {bin_ms} ms')
    return np.arange(-window, window + size, size) * 1e3 / fs, window, size


_CCG_KERNEL = None


def _ccg_kernel():
    """A numba kernel over each spike pair once (compiled on first use, cached on disk)."""
    global _CCG_KERNEL
    if _CCG_KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def kernel(forward, backward, samples, units, by_unit, starts, schedule, n_threads, window, size, half):
            n = samples.size
            # each thread takes every n_threads-th unit of a heaviest-first schedule: units own
            # disjoint rows of the counts, so threads never write the same memory
            for t in numba.prange(n_threads):
                for p in range(t, schedule.size, n_threads):
                    ui = schedule[p]
                    for k in range(starts[ui], starts[ui + 1]):
                        i = by_unit[k]
                        ti = samples[i]
                        for j in range(i + 1, n):
                            d = samples[j] - ti  # >= 0: the spike vector is sorted by sample
                            if d > window:
                                break
                            # pair (i, j): lag t_i - t_j = -d; pair (j, i): lag d; SpikeInterface keeps
                            # -W <= lag < W. Both counts go to row ui (of two arrays) and spikes are
                            # visited unit by unit: the writes stay in one cache-resident row.
                            forward[ui, units[j], half + (-d) // size] += 1
                            if d < window:
                                backward[ui, units[j], half + d // size] += 1

        _CCG_KERNEL = kernel
    return _CCG_KERNEL


def correlograms(vector: np.ndarray, n_units: int, fs: float, window_ms: float = 50.0,
                 bin_ms: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """All auto- and cross-correlograms, equal to SpikeInterface's ``compute_correlograms``.

    SpikeInterface's kernel visits every ordered pair of spikes in time order, each count a
    random access into a (units x units x bins) array far larger than the CPU caches. This one
    visits each unordered pair once, unit by unit, so that all writes of a unit land in its own
    row, and spreads the units over the CPU cores (numba threads; rows are disjoint, no locks): the
    same counts, many times faster on a full probe (see docs/performance.md).

    Parameters
    ----------
    vector : numpy.ndarray
        A SpikeInterface spike vector (``sample_index``, ``unit_index``), sorted by sample.
    n_units : int
    fs : float
        Sampling frequency, Hz.
    window_ms, bin_ms : float
        Full window and bin width, as SpikeInterface's parameters.

    Returns
    -------
    ccgs : numpy.ndarray
        (n_units, n_units, n_bins) int32; ``ccgs[a, b, k]`` counts pairs whose lag
        ``t_a - t_b`` falls in bin k.
    bins : numpy.ndarray
        Bin edges, ms.
    """
    bins, window, size = correlogram_bins(fs, window_ms, bin_ms)
    half = (bins.size - 1) // 2
    # int32: a count is at most (spikes of a unit) x (samples per bin), far below 2**31
    forward = np.zeros((n_units, n_units, bins.size - 1), dtype=np.int32)
    backward = np.zeros_like(forward)
    if vector.size:
        import numba

        from .nwb.units import stable_order

        units = np.ascontiguousarray(vector['unit_index'], dtype=np.int64)
        counts = np.bincount(units, minlength=n_units)
        starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
        schedule = np.argsort(-counts, kind='stable').astype(np.int64)
        _ccg_kernel()(forward, backward, np.ascontiguousarray(vector['sample_index'], dtype=np.int64), units,
                      stable_order(units, n_units), starts, schedule, numba.get_num_threads(), window, size, half)
    forward += backward.transpose(1, 0, 2)
    return forward, bins


def cosine_similarity(dense: np.ndarray) -> np.ndarray:
    """Template similarity as SpikeInterface's ``cosine`` with ``support='union'`` and no lag.

    On the union of two units' sparse channels, the templates (zero off their own channels) give
    the same dot product and norms as on all channels, so one matrix product does it; SpikeInterface's
    numba kernel gives the same numbers but costs ~10 s of compilation in every new process.
    """
    flat = dense.reshape(dense.shape[0], -1).astype(np.float64)
    norm = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norm > 0, norm, 1)[:, None]
    return (unit @ unit.T).astype(np.float32)


def inject(analyzer, name: str, params: dict, data: dict) -> None:
    """Set an extension's data as if SpikeInterface had computed it."""
    from spikeinterface.core.sortinganalyzer import get_extension_class

    ext = get_extension_class(name)(analyzer)
    ext.params = params
    ext.data.update(data)
    ext.run_info = {'run_completed': True, 'runtime_s': 0.0}
    analyzer.extensions[name] = ext


def build_analyzer(probe: ProbeData, extensions: Iterable[str] | str | None = None, recording=None,
                   extension_params: dict | None = None, n_jobs: int = 1):
    """Build an in-memory SortingAnalyzer of one probe from its ALF data.

    Parameters
    ----------
    probe : ProbeData
        From :func:`alfnwb.loading.load_probe`.
    extensions : str or iterable of str or None
        See :func:`resolve_extensions` (default: the ALF ones, plus the raw ones with a recording).
    recording : spikeinterface.BaseRecording, optional
        The raw AP band, from :func:`open_raw_recording`; its channels are the probe's channels.
    extension_params : dict, optional
        Per-extension SpikeInterface parameters replacing :data:`DEFAULT_PARAMS`.
    n_jobs : int
        Processes for the raw-data extensions.

    Returns
    -------
    spikeinterface.SortingAnalyzer
        Unit ids are the cluster ids (``0..n_clusters-1``), channel ids the channel indices of the
        probe (``0..n_channels-1``).
    """
    names = resolve_extensions(extensions, raw=recording is not None)
    params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    for k, v in (extension_params or {}).items():
        params.setdefault(k, {}).update(v)
    pid = probe.provenance.pid
    fs = probe_sampling_frequency(probe, recording)
    n, nch = probe.n_clusters, probe.n_channels
    samples = _spike_samples(probe, fs)
    clusters = np.asarray(probe.spikes['clusters']).astype(np.int64)
    vector, order = spike_vector(samples, clusters)
    num_samples = int(recording.get_num_samples()) if recording is not None else \
        int(samples.max() + 1 if samples.size else 0)
    analyzer = memory_analyzer(vector, fs, np.arange(n), np.arange(nch), _probegroup(probe), sparsity_mask(probe),
                               num_samples, recording)
    dense = None
    if {'templates', 'spike_locations', 'unit_locations', 'template_similarity'} & set(names):
        try:
            dense = _dense_templates(probe)
        except InvalidDataError:
            if 'templates' in names:
                raise
    job_kwargs = {'n_jobs': n_jobs, 'progress_bar': False}
    for name in names:
        if name in ('random_spikes', 'isi_histograms'):
            analyzer.compute(name, **params[name])
        elif name == 'correlograms':
            p = {'window_ms': 50.0, 'bin_ms': 1.0, 'method': 'auto', 'fast_mode': 'auto'} | params[name]
            ccg, bins = correlograms(vector, n, fs, p['window_ms'], p['bin_ms'])
            inject(analyzer, name, p, {'ccgs': ccg, 'bins': bins})
        elif name == 'template_similarity':
            inject(analyzer, name, {'method': 'cosine', 'max_lag_ms': 0.0, 'support': 'union'},
                    {'similarity': cosine_similarity(dense)})
        elif name in RAW_EXTENSIONS:
            if recording is None:
                raise AlfNwbError(f'insertion {pid}: extension {name} needs the raw data')
            analyzer.compute(name, **params[name], **job_kwargs)
        elif name == 'templates':
            ms_before, ms_after = ms_window(_peak_sample(dense), dense.shape[1], fs)
            inject(analyzer, 'templates', {'ms_before': ms_before, 'ms_after': ms_after, 'operators': ['average']},
                    {'average': dense})
        elif name == 'spike_amplitudes':
            amps = np.asarray(probe.spikes['amps'])[order]
            inject(analyzer, name, {}, {'amplitudes': (-amps * 1e6).astype(np.float32)})
        elif name == 'spike_locations':
            x = _unit_x(probe, dense)
            loc = np.zeros(order.size, dtype=[('x', 'float32'), ('y', 'float32')])
            loc['x'] = x[clusters[order]] if n else 0
            loc['y'] = np.asarray(probe.spikes['depths'])[order]
            inject(analyzer, name, {'ms_before': 0.5, 'ms_after': 0.5, 'spike_retriever_kwargs': None,
                                     'method': 'alf', 'method_kwargs': {}, 'seed': None},
                    {'spike_locations': loc})
        elif name == 'unit_locations':
            xy = np.c_[_unit_x(probe, dense), np.asarray(probe.clusters['depths'], dtype=float)]
            inject(analyzer, name, {'method': 'alf'}, {'unit_locations': xy})
        elif name == 'quality_metrics':
            metrics = _ibl_metrics(probe)
            inject(analyzer, name, {'metric_names': list(metrics.columns), 'metric_params': {},
                                     'metrics_to_compute': list(metrics.columns),
                                     'delete_existing_metrics': False, 'source': 'ibl'},
                    {'metrics': metrics})
    return analyzer


def _ibl_metrics(probe: ProbeData):
    """IBL's cluster metrics as a DataFrame indexed by unit id (= cluster id)."""
    import pandas as pd

    n = probe.n_clusters
    m = probe.clusters.get('metrics')
    if m is None:
        return pd.DataFrame(index=np.arange(n))
    m = m.reset_index(drop=True)
    if 'cluster_id' in m:
        m = m.set_index('cluster_id').reindex(np.arange(n))
    m.index = np.arange(n)
    return m


def open_raw_recording(cbin_path: str | Path, probe: ProbeData, highpass_hz: float | None = 300.0):
    """The raw AP band of a probe as a SpikeInterface recording with the probe's ALF channels.

    Parameters
    ----------
    cbin_path : str or pathlib.Path
        The ``*.ap.cbin`` file (its ``.ch`` and ``.meta`` beside it).
    probe : ProbeData
        Its ``channels.rawInd`` selects the raw channels; ids become the channel indices and
        positions the ALF ``localCoordinates``.
    highpass_hz : float or None
        Cut-off of a high-pass filter (SpikeInterface ``highpass_filter``), None for none.

    Returns
    -------
    spikeinterface.BaseRecording
    """
    from spikeinterface.extractors import read_cbin_ibl

    pid = probe.provenance.pid
    try:
        rec = read_cbin_ibl(cbin_file_path=Path(cbin_path))
    except Exception as exc:  # noqa: BLE001 - reader errors come in many types
        raise InvalidDataError(f'insertion {pid}: cannot read raw data {Path(cbin_path).name}: {exc}') from exc
    raw_ind = np.asarray(probe.channels['rawInd']).astype(np.int64)
    if raw_ind.max(initial=-1) >= rec.get_num_channels():
        raise InvalidDataError(f'insertion {pid}: channels.rawInd reaches {raw_ind.max()} but '
                               f'{Path(cbin_path).name} has {rec.get_num_channels()} channels')
    rec = rec.select_channels(rec.channel_ids[raw_ind])
    rec = rec.rename_channels(np.arange(raw_ind.size))
    rec.set_probegroup(_probegroup(probe))  # in place (SpikeInterface >= 0.105)
    if highpass_hz:
        from spikeinterface.preprocessing import highpass_filter
        rec = highpass_filter(rec, freq_min=highpass_hz, dtype='float32')
    return rec
