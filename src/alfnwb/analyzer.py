"""A SpikeInterface ``SortingAnalyzer`` built from one probe's ALF spike sorting.

What ALF already holds is injected, not recomputed: ``templates`` (``clusters.waveforms``),
``spike_amplitudes`` (``spikes.amps``), ``spike_locations`` (``spikes.depths``),
``unit_locations`` (``clusters.depths``) and ``quality_metrics`` (``clusters.metrics``). What needs
only the sorting or the templates is computed: ``random_spikes``, ``correlograms``,
``isi_histograms``, ``template_similarity``. With the raw AP band at hand, ``waveforms``,
``noise_levels`` and ``principal_components`` are computed from the traces. How each extension is
made is its entry in :mod:`alfnwb.extensions`; this module sets up the analyzer and runs them.

The analyzer is in memory and knows no NWB: :mod:`alfnwb.nwb.analyzer` writes it. An export asks
for a :class:`~alfnwb.extensions.StreamedAnalyzer` instead (``stream=True``): the same extensions,
but the spike-sized and pair-sized ones (amplitudes, locations, correlograms) are made from the ALF
arrays a block at a time while the file is written, and SpikeInterface's spike vector (24 bytes a
spike) is never built; the file is byte-equal.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ._compat import memory_analyzer as _memory_analyzer
from .errors import AlfNwbError, DataWarning, InvalidDataError
from .extensions import BUILD_ORDER, REGISTRY, BuildContext, StreamedAnalyzer, dense_templates, template_channels
from .kernels import in_vector_order, vector_order
from .model import SAMPLING_FREQUENCY, ProbeData
from .waveforms import covered_mask, flat_waveforms, select

__all__ = ['ALF_EXTENSIONS', 'RAW_EXTENSIONS', 'WAVEFORM_EXTENSIONS', 'DEFAULT_EXTENSIONS', 'EXTENSION_SOURCES', 'DEFAULT_PARAMS',
           'resolve_extensions', 'build_analyzer', 'open_raw_recording', 'probe_sampling_frequency',
           'memory_analyzer', 'probegroup', 'sparsity_mask']

FS = SAMPLING_FREQUENCY

#: Extensions available from the ALF files alone, in the order they are listed.
ALF_EXTENSIONS = tuple(n for n, e in REGISTRY.items() if e.kind != 'raw')
#: Extensions that need the raw AP band (``--raw``).
RAW_EXTENSIONS = tuple(n for n, e in REGISTRY.items() if e.kind == 'raw')
#: Extensions that IBL's extracted waveforms (``waveforms.*``) give without the raw band.
WAVEFORM_EXTENSIONS = tuple(n for n, e in REGISTRY.items() if e.from_ibl_waveforms)
#: Written when nothing is asked: everything that ALF alone gives (plus the raw ones with ``--raw``).
DEFAULT_EXTENSIONS = ALF_EXTENSIONS
#: Where each extension comes from (shown by ``alfnwb info`` and in the docs).
EXTENSION_SOURCES = {n: e.source for n, e in REGISTRY.items()}
#: SpikeInterface parameters used for the computed extensions (override with ``extension_params``).
DEFAULT_PARAMS = {n: dict(e.params) for n, e in REGISTRY.items() if e.params}


def resolve_extensions(spec: str | Iterable[str] | None, raw: bool = False,
                       waveforms: bool = False) -> tuple[str, ...]:
    """The extensions to build, in build order, dependencies included.

    Parameters
    ----------
    spec : str or iterable of str or None
        ``None`` or ``'default'``: :data:`DEFAULT_EXTENSIONS` (and the raw ones if ``raw``);
        ``'all'``: every extension the data allows; ``'none'``: nothing; otherwise names,
        as a list or comma-separated, where ``default`` and ``all`` stand for their sets
        (``'default,waveforms'``).
    raw : bool
        Whether the raw AP band is used. Raw-only extensions without it are an error.
    waveforms : bool
        Whether IBL's extracted waveforms are at hand: they give :data:`WAVEFORM_EXTENSIONS`
        without the raw band when asked for (not in the default: gigabytes per probe, see
        ``docs/analyzer.md``).

    Returns
    -------
    tuple of str
    """
    extra = (set(RAW_EXTENSIONS) if raw else set()) | (set(WAVEFORM_EXTENSIONS) if waveforms else set())
    sets = {'default': set(DEFAULT_EXTENSIONS) | (set(RAW_EXTENSIONS) if raw else set()),
            'all': set(ALF_EXTENSIONS) | extra}
    if spec is None or spec in sets:
        wanted = sets[spec or 'default']
    elif spec == 'none':
        return ()
    else:
        names = [s.strip() for s in (spec.split(',') if isinstance(spec, str) else spec) if s.strip()]
        names = [n for name in names for n in (sorted(sets[name]) if name in sets else [name])]
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise AlfNwbError(f'unknown extension(s) {", ".join(unknown)}; choose from all, none, default or '
                              f'{", ".join(ALF_EXTENSIONS + RAW_EXTENSIONS)}')
        wanted = set(names)
        need_raw = sorted(wanted & set(RAW_EXTENSIONS) - extra)
        if need_raw and not raw:
            raise AlfNwbError(f'extension(s) {", ".join(need_raw)} need the raw data (--raw, raw=True)'
                              + (' or IBL\'s extracted waveforms (waveforms.*)' if
                                 set(need_raw) <= set(WAVEFORM_EXTENSIONS) else ''))
    for name in list(wanted):
        wanted |= set(REGISTRY[name].depends)
    return tuple(n for n in BUILD_ORDER if n in wanted)


def probe_sampling_frequency(probe: ProbeData, recording=None) -> float:
    """Sampling frequency of the probe's sample clock (the raw file's when at hand, else 30 kHz)."""
    return float(recording.get_sampling_frequency()) if recording is not None else FS


def _spike_samples(probe: ProbeData, fs: float) -> np.ndarray:
    """``spikes.samples`` as int64 (int32 as :meth:`ProbeData.narrow_spikes` holds them), or derived from
    the times (a warning)."""
    sp = probe.spikes
    if 'samples' in sp:
        s = np.asarray(sp['samples'])
        return s if s.dtype == np.int32 else s.astype(np.int64, copy=False)
    warnings.warn(DataWarning(f'insertion {probe.provenance.pid}: no spikes.samples; sample indices derived from '
                              f'spikes.times at {fs:g} Hz'))
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


def memory_analyzer(vector: np.ndarray, fs: float, unit_ids: np.ndarray, channel_ids: np.ndarray, group,
                    mask: np.ndarray, num_samples: int, recording=None):
    """An in-memory SortingAnalyzer on a spike vector, with or without a recording."""
    from spikeinterface.core import ChannelSparsity, NumpySorting

    sorting = NumpySorting(vector, fs, unit_ids)
    rec_attributes = {
        'channel_ids': channel_ids, 'sampling_frequency': fs, 'num_channels': channel_ids.size,
        'num_samples': [int(num_samples)], 'is_filtered': True, 'properties': {}, 'dtype': np.dtype('float32'),
        'probegroup': group,
    }
    return _memory_analyzer(sorting, recording, ChannelSparsity(mask, unit_ids, channel_ids), rec_attributes)


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


def _sorting_analyzer(probe: ProbeData, names: tuple, samples: np.ndarray, units: np.ndarray, fs: float,
                      num_samples: int, recording, params: dict):
    """SpikeInterface's in-memory analyzer on the spike vector, the permutation from ALF, IBL's waveforms used."""
    vector, order = vector_order(samples, units)
    if order is None and samples is probe.spikes.get('samples'):
        # ALF order is the vector's: the probe's spikes.samples becomes a view of the vector's equal
        # sample_index (8 bytes a spike less for the rest of the export)
        probe.spikes['samples'] = vector['sample_index']
    ibl = _ibl_waveforms(probe, names, recording, vector, params)
    mask = sparsity_mask(probe) if ibl is None else ibl['mask']
    analyzer = memory_analyzer(vector, fs, np.arange(probe.n_clusters), np.arange(probe.n_channels),
                               _probegroup(probe), mask, num_samples, recording)
    return analyzer, order, ibl


def _vector_columns(samples: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The spike vector's sample and unit columns without the vector, and the permutation from ALF (or None).

    In ALF order when it is the vector's (the arrays themselves); else sorted by sample then unit,
    12 bytes a spike.
    """
    if in_vector_order(samples, units):
        return samples, units, None
    order = np.lexsort((units, samples))
    return samples[order], units[order], order


def _params(extension_params: dict | None) -> dict:
    params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    for k, v in (extension_params or {}).items():
        params.setdefault(k, {}).update(v)
    return params


def _templates_or_none(probe: ProbeData, names: tuple[str, ...]) -> np.ndarray | None:
    """The dense ALF templates when an extension needs them; missing templates fail only ``templates``."""
    if not any(REGISTRY[n].needs_templates for n in names):
        return None
    try:
        return dense_templates(probe)
    except InvalidDataError:
        if 'templates' in names:
            raise
        return None


def _ibl_waveforms(probe: ProbeData, names: tuple[str, ...], recording, vector: np.ndarray,
                   params: dict) -> dict | None:
    """IBL's waveforms the analyzer uses (None without them, or with the raw band, which then is the source).

    The sparsity of a unit with waveforms is its sorter channels (``clusters.waveformsChannels``)
    that every one of its kept waveforms covers: no value is made up for a channel a waveform's
    neighbourhood misses; the channels dropped that way are a :class:`DataWarning`.
    """
    pid = probe.provenance.pid
    if probe.waveforms is None or 'waveforms' not in names:  # random spikes and templates follow the waveforms
        return None
    if recording is not None:
        probe.provenance.waveforms = f'raw AP band (SpikeInterface); {probe.provenance.waveforms} not used'
        return None
    flat = flat_waveforms(probe.waveforms, probe.channels['rawInd'])
    rs = params.get('random_spikes', {})
    try:
        kept = select(flat, vector, probe.n_clusters, rs.get('max_spikes_per_unit'), int(rs.get('seed') or 0))
    except ValueError as e:
        raise InvalidDataError(f'insertion {pid}: {probe.provenance.collection}/waveforms.table: {e}') from None
    sorter = sparsity_mask(probe)
    has = kept['per_unit'] > 0
    covered = covered_mask(flat, kept['rows'], probe.n_clusters, probe.n_channels)
    mask = np.where(has[:, None], sorter & covered, sorter)
    dropped = int((sorter & ~mask).sum())
    if dropped:
        warnings.warn(DataWarning(f'insertion {pid}: IBL waveforms of {int((sorter & ~mask).any(axis=1).sum())} '
                                  f'units miss {dropped} of their sorter channels: those channels are left out '
                                  'of their sparsity'))
    return {'flat': flat, 'mask': mask, **kept}


def build_analyzer(probe: ProbeData, extensions: Iterable[str] | str | None = None, recording=None,
                   extension_params: dict | None = None, n_jobs: int = 1,
                   progress: Callable[[str], None] | None = None, stream: bool = False):
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
    progress : callable, optional
        Called with ``'<probe>: <extension>'`` as each extension starts.
    stream : bool
        For a writer: give a :class:`alfnwb.extensions.StreamedAnalyzer`, whose spike- and pair-sized
        data are made from the ALF arrays while the file is written (no spike vector, no per-spike
        copies, no full correlogram array; the probe's samples and clusters narrowed, as
        :meth:`ProbeData.narrow_spikes`). Only without raw data and IBL waveforms, which need
        SpikeInterface's analyzer; with them, the SortingAnalyzer is built as without ``stream``.

    Returns
    -------
    spikeinterface.SortingAnalyzer or alfnwb.extensions.StreamedAnalyzer
        Unit ids are the cluster ids (``0..n_clusters-1``), channel ids the channel indices of the
        probe (``0..n_channels-1``).
    """
    names = resolve_extensions(extensions, raw=recording is not None, waveforms=probe.waveforms is not None)
    fs = probe_sampling_frequency(probe, recording)
    stream = stream and recording is None and (probe.waveforms is None or 'waveforms' not in names)
    if stream:  # a streamed analyzer holds them until its correlograms are written: narrower when they fit
        probe.narrow_spikes()
    samples, units = _spike_samples(probe, fs), np.asarray(probe.spikes['clusters'])
    num_samples = int(recording.get_num_samples()) if recording is not None else \
        int(samples.max() + 1 if samples.size else 0)
    params = _params(extension_params)
    if stream:
        (samples, units, order), analyzer, ibl = _vector_columns(samples, units), None, None
    else:
        analyzer, order, ibl = _sorting_analyzer(probe, names, samples, units, fs, num_samples, recording, params)
        vector = analyzer.sorting.to_spike_vector()
        samples, units = vector['sample_index'], vector['unit_index']
    ctx = BuildContext(probe=probe, analyzer=analyzer, params=params, samples=samples, units=units, order=order,
                       fs=fs, recording=recording, n_jobs=n_jobs, dense=_templates_or_none(probe, names), ibl=ibl,
                       stream=stream)
    if stream:
        ctx.analyzer = StreamedAnalyzer(np.arange(probe.n_clusters), probe.n_channels, fs, num_samples,
                                        sparsity_mask(probe), units, ctx.by_unit)
    for name in names:
        if progress is not None:
            progress(f'{probe.provenance.probe}: {name}')
        REGISTRY[name].build(ctx)
    # the context lives on in the producers of a streamed analyzer: the dense templates need not
    ctx.dense = None
    return ctx.analyzer


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
