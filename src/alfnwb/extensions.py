"""The registry of SortingAnalyzer extensions: one entry per extension, how it is made, written and read.

Each entry says where the extension comes from (``ALF``: injected from the ALF files, ``computed``:
from the sorting or the templates, ``raw``: from the raw AP band), its SpikeInterface parameters,
and holds three steps:

- ``build(ctx)``: put it on the in-memory analyzer (:func:`alfnwb.analyzer.build_analyzer` gives
  the :class:`BuildContext`);
- ``write(ctx)``: turn it into ndx-spikesorting objects (:mod:`alfnwb.nwb.analyzer` gives a context
  with the NWB helpers: ``region``, ``data``, ``per_spike``, ``per_random_spike``, ...);
- ``read(ctx)``: put it back on an analyzer from the file (:func:`alfnwb.read_sorting_analyzer`
  gives a context with the open extensions group and the spike orderings).

Adding an extension is one class here plus its tests. The registry's order is the order extensions
are listed, written and read; :data:`BUILD_ORDER` puts first what SpikeInterface would otherwise
delete (it deletes the children of an extension it computes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._compat import extension_array, inject_extension
from .errors import AlfNwbError, InvalidDataError
from .kernels import BLOCK, CorrelogramRows, cosine_similarity, group_spikes, isi_histograms, uniform_random_spikes
from .model import DiskColumn, ProbeData

__all__ = ['Extension', 'REGISTRY', 'BUILD_ORDER', 'BuildContext', 'SpikeRows', 'StreamedAnalyzer', 'StoredExtension', 'ms_window', 'template_channels',
           'dense_templates']


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


def dense_templates(probe: ProbeData) -> np.ndarray:
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
    # blocks of units: the absolute values of all templates at once would be a copy of them all
    step = max(1, (1 << 23) // max(dense[0].nbytes, 1))
    best = np.concatenate([np.abs(dense[a:a + step]).max(axis=1).argmax(axis=1)
                           for a in range(0, dense.shape[0], step)])
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


class SpikeRows:
    """Per-spike rows in spike-vector order, made from the ALF arrays when indexed, never all at once.

    ``rows[i]`` (positions, or a slice, of the spike vector) gives those spikes' rows; a writer
    gathers them a block at a time in the order of the units table. Made of a column held on disk
    in that order (:class:`alfnwb.model.DiskColumn`), they come as ``rows.rows(start, stop)`` in the
    order ``grouped_by`` (what :func:`alfnwb.nwb.chunks.gather` asks for).
    """

    def __init__(self, n: int, tail: tuple, dtype, make, grouped_by: np.ndarray | None = None, rows=None):
        self.shape, self.dtype, self._make = (int(n),) + tuple(tail), np.dtype(dtype), make
        self.ndim = len(self.shape)
        self.grouped_by, self._rows = grouped_by, rows

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows of the spikes ``grouped_by[start:stop]`` (only when made with ``grouped_by``)."""
        return self._rows(start, stop)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return self._make(index)

    def materialise(self, out: np.ndarray | None = None) -> np.ndarray:
        """All rows, filled a block at a time (no full-size temporary beside the result)."""
        out = np.empty(self.shape, dtype=self.dtype) if out is None else out
        for a in range(0, self.shape[0], BLOCK):
            out[a:a + BLOCK] = self[a:a + BLOCK]
        return out


class StoredExtension:
    """An extension of a :class:`StreamedAnalyzer`: its parameters and data (arrays or row producers)."""

    def __init__(self, params: dict, data: dict, fs: float):
        self.params, self.data, self._fs = params, data, fs

    @property
    def nbefore(self) -> int:
        """Samples before the peak, as SpikeInterface derives them from ``ms_before``."""
        return int(self.params['ms_before'] * self._fs / 1000.0)


class StreamedAnalyzer:
    """A probe's analyzer as an export writes it: what the NWB writer reads, with no spike vector.

    SpikeInterface's in-memory analyzer holds a 24-byte-a-spike spike vector and every extension's
    data whole. Here the spike-sized and pair-sized data (``spike_amplitudes``, ``spike_locations``,
    ``correlograms``) are producers (:class:`SpikeRows`, :class:`alfnwb.kernels.CorrelogramRows`)
    read from the ALF arrays while the file is written. The numbers are the same;
    :func:`alfnwb.analyzer.build_analyzer` gives the SpikeInterface object.
    """

    def __init__(self, unit_ids: np.ndarray, n_channels: int, fs: float, num_samples: int, mask: np.ndarray,
                 units: np.ndarray, by_unit: tuple):
        from types import SimpleNamespace

        self.unit_ids, self.sampling_frequency, self._n_channels = unit_ids, float(fs), int(n_channels)
        self._num_samples, self.sparsity = int(num_samples), SimpleNamespace(mask=mask)
        self.spike_units, self.by_unit = units, by_unit  # unit of each spike (spike-vector order), grouped
        self.extensions: dict[str, StoredExtension] = {}

    def get_num_channels(self) -> int:
        return self._n_channels

    def get_total_samples(self) -> int:
        return self._num_samples

    def has_extension(self, name: str) -> bool:
        return name in self.extensions

    def get_extension(self, name: str) -> StoredExtension | None:
        return self.extensions.get(name)

    def release_arrays(self) -> int:
        """Drop the extensions' arrays, keeping their producers (read while the file is written).

        Once :func:`alfnwb.export.build_nwbfile` has put the arrays into the NWBFile (as copies, or
        the same objects), the analyzer need not hold them: the dense templates alone are 0.13 GB at
        1000 units, 0.25 GB at 2000, and would otherwise stay through the whole write.

        Returns
        -------
        int
            Bytes of the arrays no longer held here.
        """
        freed = 0
        for ext in self.extensions.values():
            freed += sum(v.nbytes for v in ext.data.values() if isinstance(v, np.ndarray))
            ext.data = {k: v for k, v in ext.data.items() if not isinstance(v, np.ndarray)}
        return freed


@dataclass
class BuildContext:
    """What building an extension may use: the probe, its analyzer, the spikes and parameters."""

    probe: ProbeData
    analyzer: object  # a SpikeInterface SortingAnalyzer, or a StreamedAnalyzer (``stream``)
    params: dict  # extension name -> SpikeInterface parameters
    samples: np.ndarray  # sample of each spike, in spike-vector order
    units: np.ndarray  # unit of each spike, in spike-vector order
    order: np.ndarray | None  # spike vector position -> ALF spike; None: the ALF order is the vector's
    fs: float
    recording: object = None
    n_jobs: int = 1
    dense: np.ndarray | None = None  # ALF templates, uV, (units, samples, channels)
    ibl: dict | None = None  # IBL's extracted waveforms the analyzer uses (alfnwb.analyzer), or None
    stream: bool = False  # spike- and pair-sized data as producers read while writing (StreamedAnalyzer)
    extra: dict = field(default_factory=dict)
    _by_unit: tuple | None = field(default=None, repr=False)

    @property
    def n_spikes(self) -> int:
        return int(self.samples.size)

    @property
    def by_unit(self) -> tuple[np.ndarray, np.ndarray]:
        """The spike vector grouped by unit (order, ends); the probe's own grouping when the orders agree."""
        if self._by_unit is None:
            self._by_unit = self.probe.by_cluster() if self.order is None else \
                group_spikes(self.units, self.probe.n_clusters)
        return self._by_unit

    def alf(self, index):
        """ALF spikes of spike-vector positions (or a slice of them)."""
        return index if self.order is None else self.order[index]

    def column_rows(self, key: str, tail: tuple, dtype, make) -> SpikeRows:
        """Per-spike rows ``make(values, spikes)``: ``values`` of ALF ``spikes.<key>`` at the spike-vector
        positions ``spikes``.

        A column the export holds on disk (:class:`~alfnwb.model.DiskColumn`, grouped by unit) is
        read from its file block by block as the writer gathers the rows by unit, when the spike
        vector's order is ALF's and the analyzer streams; otherwise it is read back into memory here.
        """
        col = self.probe.spikes[key]
        on_disk = isinstance(col, DiskColumn) and self.stream and self.order is None
        col = col if on_disk else np.asarray(col)

        def by_unit(a: int, b: int) -> np.ndarray:  # the writer's by-unit order is the probe's, the column's
            return make(col.rows(a, b), col.grouped_by[a:b])

        return SpikeRows(self.n_spikes, tail, dtype, lambda i: make(col[self.alf(i)], i),
                         grouped_by=col.grouped_by if on_disk else None, rows=by_unit if on_disk else None)

    def inject(self, name: str, params: dict, data: dict) -> None:
        """Set an extension's parameters and data on the analyzer."""
        if self.stream:
            self.analyzer.extensions[name] = StoredExtension(params, data, self.fs)
        else:
            inject_extension(self.analyzer, name, params, data)

    def per_spike(self, rows: SpikeRows):
        """Per-spike rows for the analyzer: the producer itself when streaming, else all of them."""
        return rows if self.stream else rows.materialise()


class Extension:
    """One SortingAnalyzer extension: its source, parameters and its build, write and read steps."""

    name: str = ''
    kind: str = 'computed'  # 'ALF', 'computed' or 'raw'
    source: str = ''  # shown by ``alfnwb info`` and in the docs
    nwb_groups: tuple[str, ...] = ()  # groups of ``SpikeSortingExtensions`` it is stored in
    depends: tuple[str, ...] = ()  # parents that alfnwb builds with it
    params: dict = {}  # SpikeInterface parameters (override with ``extension_params``)
    stage: int = 2  # build order: 0 random spikes, 1 raw-data extensions, 2 the rest
    needs_templates: bool = False  # uses the ALF templates (dense, uV)
    from_ibl_waveforms: bool = False  # a raw extension that IBL's extracted waveforms give as well

    def build(self, ctx: BuildContext) -> None:
        """Compute it with SpikeInterface (extensions taken from ALF override this)."""
        if self.kind == 'raw' and ctx.recording is None and not (self.from_ibl_waveforms and ctx.ibl):
            raise AlfNwbError(f'insertion {ctx.probe.provenance.pid}: extension {self.name} needs the raw data')
        job_kwargs = {'n_jobs': ctx.n_jobs, 'progress_bar': False} if self.kind == 'raw' else {}
        ctx.analyzer.compute(self.name, **ctx.params.get(self.name, {}), **job_kwargs)

    def write(self, ctx) -> None:
        raise NotImplementedError

    def read(self, ctx) -> None:
        raise NotImplementedError


class RandomSpikes(Extension):
    name, kind, nwb_groups, stage = 'random_spikes', 'computed', ('random_spikes',), 0
    source = 'computed (SpikeInterface\'s uniform choice, seeded; alfnwb kernel, same spikes)'
    params = {'method': 'uniform', 'max_spikes_per_unit': 100, 'seed': 0}

    def build(self, ctx: BuildContext) -> None:
        """SpikeInterface's uniform choice (its numbers, alfnwb's kernel), or exactly the spikes IBL extracted."""
        p = ctx.params[self.name]
        if ctx.ibl is None:
            p = {'method': 'uniform', 'max_spikes_per_unit': 500, 'margin_size': None, 'seed': None} | p
            if p['method'] != 'uniform' or p['margin_size'] is not None:
                return super().build(ctx)
            chosen = uniform_random_spikes(ctx.units, ctx.probe.n_clusters, int(p['max_spikes_per_unit']),
                                           p['seed'], grouped=ctx.by_unit)
            return ctx.inject(self.name, p, {'random_spikes_indices': chosen})
        ctx.inject(self.name, {'method': 'ibl_waveforms', 'max_spikes_per_unit':
                                                   p.get('max_spikes_per_unit'), 'margin_size': None,
                                                   'seed': p.get('seed')}, {'random_spikes_indices': ctx.ibl['spikes']})

    def write(self, ctx) -> None:
        from hdmf.common import VectorData, VectorIndex
        from ndx_spikesorting import RandomSpikes as NWBRandomSpikes

        sel, sel_units, sel_order, sel_ends = ctx.random_selection()
        data = VectorData(name='random_spikes_indices', data=ctx.data(ctx.rank(sel)[sel_order]),
                          description='index of each selected spike in its unit\'s spike train (units.spike_times)')
        ctx.ext['random_spikes'] = NWBRandomSpikes(
            random_spikes_indices=data,
            random_spikes_indices_index=VectorIndex(name='random_spikes_indices_index', data=sel_ends, target=data))

    def read(self, ctx) -> None:
        local, per_unit = ctx.ragged('random_spikes', 'random_spikes_indices')
        owner = np.repeat(np.arange(ctx.n), per_unit)
        global_idx = ctx.to_vector[ctx.byunit_start[owner] + local]
        ctx.perm = np.argsort(global_idx, kind='stable')
        ctx.selected = global_idx[ctx.perm]
        inject_extension(ctx.analyzer, self.name, {'method': 'uniform', 'max_spikes_per_unit':
                                                   int(per_unit.max(initial=0)), 'margin_size': None, 'seed': None},
                         {'random_spikes_indices': ctx.selected})


class Templates(Extension):
    name, kind, nwb_groups, needs_templates = 'templates', 'ALF', ('templates',), True
    source = 'ALF clusters.waveforms (uV); with IBL\'s waveforms.*: SpikeInterface from them'

    def build(self, ctx: BuildContext) -> None:
        if ctx.ibl is not None and ctx.analyzer.has_extension('waveforms'):  # SpikeInterface's, of the waveforms
            ctx.analyzer.compute(self.name, operators=['average', 'std', 'median'])
            return
        ms_before, ms_after = ms_window(_peak_sample(ctx.dense), ctx.dense.shape[1], ctx.fs)
        ctx.inject(self.name, {'ms_before': ms_before, 'ms_after': ms_after, 'operators': ['average']},
                   {'average': ctx.dense})

    def write(self, ctx) -> None:
        from hdmf.common import VectorData, VectorIndex
        from ndx_spikesorting import Templates as NWBTemplates

        t = ctx.analyzer.get_extension(self.name)
        dense = extension_array(ctx.analyzer, self.name, 'average')  # (units, samples, channels), uV
        width = ctx.channels.shape[1]
        per_unit = np.take_along_axis(np.swapaxes(dense, 1, 2), ctx.channels[:, :, None], axis=1)  # (u, width, s)
        valid = np.arange(width)[None, :] < ctx.counts[:, None]
        data = VectorData(name='data', description='template of each unit on each of its sparse channels, uV',
                          data=ctx.data(per_unit[valid].astype(np.float32), chunk=4096))
        ctx.ext[self.name] = NWBTemplates(
            peak_sample_index=int(t.nbefore), data=data,
            data_index=VectorIndex(name='data_index', data=np.cumsum(ctx.counts).astype(np.int64), target=data),
            electrodes=ctx.region(ctx.channels[valid] + ctx.electrode_offset, 'electrode of each template row'))

    def read(self, ctx) -> None:
        t = ctx.x[self.name]
        rows, per_unit = ctx.ragged(self.name, 'data')
        dense = np.zeros((ctx.n, rows.shape[1], ctx.erows.size), dtype=np.float32)
        dense[np.repeat(np.arange(ctx.n), per_unit), :, ctx.electrode_pos[t['electrodes'][:]]] = rows
        ms_before, ms_after = ms_window(int(t.attrs['peak_sample_index']), rows.shape[1], ctx.fs)
        inject_extension(ctx.analyzer, self.name, {'ms_before': ms_before, 'ms_after': ms_after,
                                                   'operators': ['average']}, {'average': dense})


class _PerSpike(Extension):
    """An extension with one value per spike, stored per unit in the order of ``units.spike_times``."""

    nwb_class = ''
    data_key = ''

    def write(self, ctx) -> None:
        import ndx_spikesorting

        values = extension_array(ctx.analyzer, self.name, self.data_key)
        if values.dtype.names:
            values = _record_rows(values)
        data, index = ctx.per_spike(values, f'{self.name} of each spike, in the order of units.spike_times')
        ctx.ext[self.name] = getattr(ndx_spikesorting, self.nwb_class)(data=data, data_index=index)


def _record_rows(values: np.ndarray) -> np.ndarray:
    """(x, y[, z]) records as rows of a 2-D array: a view when the fields are packed and of one type."""
    names = values.dtype.names
    kinds = {values.dtype[k] for k in names}
    if len(kinds) == 1 and values.dtype.itemsize == len(names) * values.dtype[0].itemsize \
            and values.flags.c_contiguous:
        return values.view(values.dtype[0]).reshape(values.size, len(names))
    return np.stack([values[k] for k in names], axis=1)


class SpikeAmplitudes(_PerSpike):
    name, kind, nwb_groups, nwb_class = 'spike_amplitudes', 'ALF', ('spike_amplitudes',), 'SpikeAmplitudes'
    data_key = 'amplitudes'
    source = 'ALF spikes.amps (uV, negative)'

    def build(self, ctx: BuildContext) -> None:
        rows = ctx.column_rows('amps', (), np.float32,
                               lambda amps, i: (amps * -1e6).astype(np.float32))  # V -> uV, negative
        ctx.inject(self.name, {}, {'amplitudes': ctx.per_spike(rows)})

    def read(self, ctx) -> None:
        inject_extension(ctx.analyzer, self.name, {}, {'amplitudes': ctx.x[f'{self.name}/data'][:][ctx.order]})


_SPIKE_LOCATION_PARAMS = {'ms_before': 0.5, 'ms_after': 0.5, 'spike_retriever_kwargs': None, 'method': 'alf',
                          'method_kwargs': {}, 'seed': None}


class SpikeLocations(_PerSpike):
    name, kind, nwb_groups, nwb_class = 'spike_locations', 'ALF', ('spike_locations',), 'SpikeLocations'
    data_key = 'spike_locations'
    source = 'ALF spikes.depths + template centre of mass (um)'
    needs_templates = True

    def build(self, ctx: BuildContext) -> None:
        x = _unit_x(ctx.probe, ctx.dense).astype(np.float32)
        units = ctx.units

        def make(y: np.ndarray, i) -> np.ndarray:  # x of the spike's unit, y its ALF depth
            out = np.empty((y.shape[0], 2), dtype=np.float32)
            out[:, 0], out[:, 1] = x[units[i]], y
            return out

        rows = ctx.column_rows('depths', (2,), np.float32, make)
        if ctx.stream:
            return ctx.inject(self.name, dict(_SPIKE_LOCATION_PARAMS), {'spike_locations': rows})
        loc = np.zeros(ctx.n_spikes, dtype=[('x', 'float32'), ('y', 'float32')])  # SpikeInterface's records
        rows.materialise(loc.view(np.float32).reshape(-1, 2))
        inject_extension(ctx.analyzer, self.name, dict(_SPIKE_LOCATION_PARAMS), {'spike_locations': loc})

    def read(self, ctx) -> None:
        loc = ctx.x[f'{self.name}/data'][:][ctx.order]
        dtype = [(k, loc.dtype) for k in 'xyz'[:loc.shape[1]]]
        vec = np.zeros(loc.shape[0], dtype=dtype)
        for i, (k, _) in enumerate(dtype):
            vec[k] = loc[:, i]
        inject_extension(ctx.analyzer, self.name, dict(_SPIKE_LOCATION_PARAMS), {'spike_locations': vec})


class UnitLocations(Extension):
    name, kind, nwb_groups, needs_templates = 'unit_locations', 'ALF', ('unit_locations',), True
    source = 'ALF clusters.depths + template centre of mass (um)'

    def build(self, ctx: BuildContext) -> None:
        xy = np.c_[_unit_x(ctx.probe, ctx.dense), np.asarray(ctx.probe.clusters['depths'], dtype=float)]
        ctx.inject(self.name, {'method': 'alf'}, {'unit_locations': xy})

    def write(self, ctx) -> None:
        from ndx_spikesorting import UnitLocations as NWBUnitLocations

        ctx.ext[self.name] = NWBUnitLocations(data=np.asarray(extension_array(ctx.analyzer, self.name,
                                                                              'unit_locations')))

    def read(self, ctx) -> None:
        inject_extension(ctx.analyzer, self.name, {'method': 'alf'},
                         {'unit_locations': ctx.x[f'{self.name}/data'][:]})


class _Histogram(Extension):
    """Counts per pair of units (or per unit) and lag bin, with their bin edges (ms)."""

    nwb_class = ''
    data_key = ''

    def write(self, ctx) -> None:
        import ndx_spikesorting

        counts = extension_array(ctx.analyzer, self.name, self.data_key)
        edges = extension_array(ctx.analyzer, self.name, 'bins')
        data = ctx.row_blocks(counts) if isinstance(counts, CorrelogramRows) else \
            ctx.data(ctx.histogram_counts(counts), chunk=None)
        ctx.ext[self.name] = getattr(ndx_spikesorting, self.nwb_class)(
            data=data, bin_edges=np.asarray(edges, dtype=np.float64))

    def read(self, ctx) -> None:
        edges = ctx.x[f'{self.name}/bin_edges'][:]
        bin_ms = float(np.median(np.diff(edges))) if edges.size > 1 else 0.0
        window_ms = float(edges[-1] - edges[0])
        inject_extension(ctx.analyzer, self.name, {'window_ms': window_ms, 'bin_ms': bin_ms, 'method': 'auto'},
                         {self.data_key: ctx.x[f'{self.name}/data'][:].astype(np.int64), 'bins': edges})


class Correlograms(_Histogram):
    name, nwb_groups, nwb_class, data_key = 'correlograms', ('correlograms',), 'Correlograms', 'ccgs'
    source = 'computed (alfnwb kernel equal to SpikeInterface\'s)'
    params = {'window_ms': 50.0, 'bin_ms': 1.0}

    def build(self, ctx: BuildContext) -> None:
        p = {'window_ms': 50.0, 'bin_ms': 1.0, 'method': 'auto', 'fast_mode': 'auto'} | ctx.params[self.name]
        rows = CorrelogramRows(ctx.samples, ctx.units, ctx.probe.n_clusters, ctx.fs, p['window_ms'], p['bin_ms'],
                               by_unit=ctx.by_unit)
        # streaming: rows are counted as the writer compresses them, the whole array never exists
        ctx.inject(self.name, p, {'ccgs': rows if ctx.stream else rows.all(), 'bins': rows.bins})


class ISIHistograms(_Histogram):
    name, nwb_groups, nwb_class, data_key = 'isi_histograms', ('isi_histograms',), 'ISIHistograms', 'isi_histograms'
    source = 'computed (alfnwb kernel equal to SpikeInterface\'s)'
    params = {'window_ms': 50.0, 'bin_ms': 1.0}

    def build(self, ctx: BuildContext) -> None:
        p = {'window_ms': 50.0, 'bin_ms': 1.0, 'method': 'auto'} | ctx.params[self.name]
        if not 1e3 / ctx.fs <= p['bin_ms'] <= p['window_ms']:
            raise AlfNwbError(f'insertion {ctx.probe.provenance.pid}: isi_histograms bin_ms {p["bin_ms"]} must be '
                              f'between the sampling period ({1e3 / ctx.fs:.3g} ms) and window_ms {p["window_ms"]}')
        counts, bins = isi_histograms(ctx.samples, ctx.units, ctx.probe.n_clusters, ctx.fs, p['window_ms'],
                                      p['bin_ms'], order=ctx.by_unit[0])
        ctx.inject(self.name, p, {'isi_histograms': counts, 'bins': bins})


_SIMILARITY_PARAMS = {'method': 'cosine', 'max_lag_ms': 0.0, 'support': 'union'}


class TemplateSimilarity(Extension):
    name, nwb_groups, depends, needs_templates = 'template_similarity', ('template_similarity',), ('templates',), True
    source = 'computed (SpikeInterface, from the ALF templates)'
    params = {'method': 'cosine'}

    def build(self, ctx: BuildContext) -> None:
        ctx.inject(self.name, dict(_SIMILARITY_PARAMS), {'similarity': cosine_similarity(ctx.dense)})

    def write(self, ctx) -> None:
        from ndx_spikesorting import TemplateSimilarity as NWBTemplateSimilarity

        ctx.ext[self.name] = NWBTemplateSimilarity(
            data=ctx.data(np.asarray(extension_array(ctx.analyzer, self.name, 'similarity')), chunk=None))

    def read(self, ctx) -> None:
        inject_extension(ctx.analyzer, self.name, dict(_SIMILARITY_PARAMS),
                         {'similarity': ctx.x[f'{self.name}/data'][:]})


class QualityMetrics(Extension):
    name, kind, nwb_groups = 'quality_metrics', 'ALF', ('quality_metrics',)
    source = 'ALF clusters.metrics (IBL names)'

    @staticmethod
    def _params(columns) -> dict:
        return {'metric_names': list(columns), 'metric_params': {}, 'metrics_to_compute': list(columns),
                'delete_existing_metrics': False, 'source': 'ibl'}

    def build(self, ctx: BuildContext) -> None:
        metrics = ctx.probe.cluster_metrics()
        ctx.inject(self.name, self._params(metrics.columns), {'metrics': metrics})

    def write(self, ctx) -> None:
        ctx.units_metrics = ctx.metrics_table(self.name, extension_array(ctx.analyzer, self.name, 'metrics'))

    def read(self, ctx) -> None:
        import pandas as pd

        q = ctx.x[self.name]
        metric_units = q['unit'][:].astype(np.int64)  # units table rows
        pos = np.full(max(ctx.u1, int(metric_units.max(initial=0)) + 1), -1, dtype=np.int64)
        pos[ctx.urows] = np.arange(ctx.n)
        where = pos[metric_units]
        cols = {}
        for k in q.keys():
            if k in ('unit', 'id') or k.endswith('_index'):
                continue
            values = ctx.decode(q[k][:])
            out = np.empty(ctx.n, dtype=values.dtype)
            out[where] = values
            cols[k] = out
        metrics = pd.DataFrame(cols, index=ctx.unit_ids)
        inject_extension(ctx.analyzer, self.name, self._params(cols), {'metrics': metrics})


class Waveforms(Extension):
    name, kind, nwb_groups, depends, stage = 'waveforms', 'raw', ('waveforms',), ('random_spikes',), 1
    source = 'IBL waveforms.* (uV), else computed from the raw AP band'
    params = {'ms_before': 1.0, 'ms_after': 2.0}
    from_ibl_waveforms = True

    def build(self, ctx: BuildContext) -> None:
        """IBL's traces (V -> uV) on the unit's sparse channels, or SpikeInterface's from the raw band."""
        if ctx.ibl is None:
            return super().build(ctx)
        from .waveforms import TROUGH_SAMPLE, on_channels

        mask = ctx.analyzer.sparsity.mask
        counts = mask.sum(axis=1)
        width = int(counts.max(initial=0))
        channels = np.argsort(~mask, axis=1, kind='stable')[:, :width]
        channels = np.where(np.arange(width)[None, :] < counts[:, None], channels, -1)
        flat, rows = ctx.ibl['flat'], ctx.ibl['rows']
        n_samples = flat['traces'].shape[-1]
        wf = np.empty((rows.size, n_samples, width), dtype=np.float32)  # SpikeInterface's layout, filled by blocks
        for a in range(0, rows.size, 8192):
            block = on_channels(flat, rows[a:a + 8192], channels[flat['cluster'][rows[a:a + 8192]]])  # V
            np.nan_to_num(block, copy=False, nan=0.0)  # NaN only where SpikeInterface pads
            block *= np.float32(1e6)
            wf[a:a + block.shape[0]] = np.swapaxes(block, 1, 2)
        ms_before, ms_after = ms_window(TROUGH_SAMPLE, n_samples, ctx.fs)
        inject_extension(ctx.analyzer, self.name, {'ms_before': ms_before, 'ms_after': ms_after, 'dtype': 'float32'},
                         {'waveforms': wf})

    def write(self, ctx) -> None:
        from hdmf.common import VectorIndex
        from ndx_spikesorting import Waveforms as NWBWaveforms

        w = ctx.analyzer.get_extension(self.name)
        data, index, electrodes, sel_ends = ctx.per_random_spike(
            w.get_data(), 'waveform of each random spike on each sparse channel, uV', chunk=4096)
        ctx.ext[self.name] = NWBWaveforms(
            peak_sample_index=int(w.nbefore), data=data, data_index=index,
            data_index_index=VectorIndex(name='data_index_index', data=sel_ends, target=index),
            electrodes=ctx.region(electrodes, 'electrode of each waveform row'),
            random_spikes=ctx.ext.get('random_spikes'))

    def read(self, ctx) -> None:
        if ctx.selected is None:
            return
        w = ctx.x[self.name]
        rows, per_spike = ctx.ragged(self.name, 'data')
        wf = ctx.unpad(rows, per_spike)[ctx.perm]
        ms_before, ms_after = ms_window(int(w.attrs['peak_sample_index']), rows.shape[1], ctx.fs)
        inject_extension(ctx.analyzer, self.name, {'ms_before': ms_before, 'ms_after': ms_after, 'dtype': 'float32'},
                         {'waveforms': wf})


class NoiseLevels(Extension):
    name, kind, nwb_groups, stage = 'noise_levels', 'raw', ('noise_levels',), 1
    source = 'computed from the raw AP band (uV)'
    params = {'random_slices_kwargs': {'seed': 0}}  # seeded: the same data give the same file

    def write(self, ctx) -> None:
        from ndx_spikesorting import NoiseLevels as NWBNoiseLevels

        ctx.ext[self.name] = NWBNoiseLevels(data=np.asarray(ctx.analyzer.get_extension(self.name).get_data(),
                                                            dtype=np.float32))

    def read(self, ctx) -> None:
        inject_extension(ctx.analyzer, self.name, {},
                         {'noise_levels': ctx.x[f'{self.name}/data'][:].astype(np.float32)})


class PrincipalComponents(Extension):
    name, kind, stage = 'principal_components', 'raw', 1
    nwb_groups = ('pca_projections_by_channel', 'pca_projections_concatenated')
    depends = ('random_spikes', 'waveforms')
    source = 'computed (SpikeInterface) from the waveforms'
    from_ibl_waveforms = True
    params = {'n_components': 5, 'mode': 'by_channel_local', 'whiten': True}

    def write(self, ctx) -> None:
        from hdmf.common import VectorData, VectorIndex
        from ndx_spikesorting import PCAProjectionsByChannel, PCAProjectionsConcatenated

        proj = ctx.analyzer.get_extension(self.name).get_data()  # (spikes, components[, sparse channels])
        if proj.ndim == 3:
            data, index, electrodes, sel_ends = ctx.per_random_spike(
                proj, 'projection of each random spike on each sparse channel')
            ctx.ext['pca_projections_by_channel'] = PCAProjectionsByChannel(
                data=data, data_index=index,
                data_index_index=VectorIndex(name='data_index_index', data=sel_ends, target=index),
                electrodes=ctx.region(electrodes, 'electrode of each projection row'), waveforms=ctx.ext['waveforms'])
        else:
            sel, sel_units, sel_order, sel_ends = ctx.random_selection()
            data = VectorData(name='data', description='projection of each random spike',
                              data=ctx.data(proj[sel_order].astype(np.float32)))
            ctx.ext['pca_projections_concatenated'] = PCAProjectionsConcatenated(
                data=data, data_index=VectorIndex(name='data_index', data=sel_ends, target=data),
                waveforms=ctx.ext['waveforms'])

    def read(self, ctx) -> None:
        if 'pca_projections_by_channel' not in ctx.x or ctx.selected is None:
            return
        rows, per_spike = ctx.ragged('pca_projections_by_channel', 'data')
        proj = ctx.unpad(rows, per_spike)[ctx.perm]
        inject_extension(ctx.analyzer, self.name, {'n_components': rows.shape[1], 'mode': 'by_channel_local',
                                                   'whiten': True, 'dtype': 'float32'}, {'pca_projection': proj})


#: Every extension, in the order they are listed, written and read (dependencies first).
REGISTRY: dict[str, Extension] = {e.name: e for e in (
    RandomSpikes(), Templates(), SpikeAmplitudes(), SpikeLocations(), UnitLocations(), Correlograms(),
    ISIHistograms(), TemplateSimilarity(), QualityMetrics(), Waveforms(), NoiseLevels(), PrincipalComponents())}

#: Build order: random spikes, then the raw-data extensions, then the rest (stable within a stage).
BUILD_ORDER: tuple[str, ...] = tuple(sorted(REGISTRY, key=lambda n: REGISTRY[n].stage))

#: ndx-spikesorting group -> extension
GROUP_TO_EXTENSION: dict[str, str] = {g: e.name for e in REGISTRY.values() for g in e.nwb_groups}
