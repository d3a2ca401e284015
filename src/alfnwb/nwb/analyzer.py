"""A probe's SortingAnalyzer written with ndx-spikesorting: one SpikeSortingContainer per probe.

``ndx_spikesorting.add_sorting_analyzer_to_nwbfile`` handles one probe per file and matches
electrodes and units by position; here each probe's container points at its own rows of the shared
electrodes and units tables, and every conversion is vectorised (no loop over units or spikes).
What each extension becomes is its ``write`` step in :mod:`alfnwb.extensions`; this module gives
those steps the NWB helpers (:class:`WriteContext`) and assembles the container.

Per-spike data (amplitudes, locations) is stored per unit in the order of that unit's
``spike_times`` (SpikeInterface's spike vector regrouped with a *stable* sort). The analyzer is
SpikeInterface's, or an export's :class:`~alfnwb.extensions.StreamedAnalyzer`, whose per-spike rows
and correlogram rows are produced as their chunks are compressed.
"""

from __future__ import annotations

import numpy as np

from .._compat import extension_array, units_metrics_class
from ..extensions import REGISTRY
from ..kernels import group_spikes
from .chunks import RowBlocks, dataio, gather

__all__ = ['add_spike_sorting', 'CORRELOGRAM_DTYPES', 'WriteContext']

# Regions built before their container joins the file warn that their table "does not share an
# ancestor"; they all point at the file's own electrodes/units tables, so the warning is noise.
_ANCESTOR_WARNING = 'The linked table for DynamicTableRegion'

#: Integer types tried for histogram counts, smallest first: the schema's ``int`` is at least 32 bits,
#: and the maximum count decides (lossless); gzip with shuffle then squeezes the empty high bytes.
CORRELOGRAM_DTYPES = (np.int32, np.int64)
#: Bytes per chunk of a dataset made a block of rows at a time (correlograms: a few units' rows).
ROW_CHUNK_BYTES = 1 << 21


def _padded_channels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's sparse channels ascending, padded: (n_units, max_channels), and the counts."""
    counts = mask.sum(axis=1)
    width = int(counts.max()) if counts.size else 0
    channels = np.argsort(~mask, axis=1, kind='stable')[:, :width]
    return channels, counts


def _column(s):
    """A metrics column as data hdmf writes: strings for text, float for numbers (NaN kept)."""
    import pandas as pd

    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return ['' if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in s]
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(s) and not s.isna().any():
        return s.to_numpy(dtype=np.int64)
    return s.to_numpy(dtype=float)


class WriteContext:
    """One probe's analyzer on its way into the file: shared orderings and the NWB helpers."""

    def __init__(self, nwbfile, analyzer, electrode_offset: int, unit_offset: int, compression: str | None):
        self.nwbfile, self.analyzer, self.compression = nwbfile, analyzer, compression
        self.electrode_offset, self.unit_offset = electrode_offset, unit_offset
        self.n_units, n_channels = len(analyzer.unit_ids), analyzer.get_num_channels()
        self.mask = analyzer.sparsity.mask if analyzer.sparsity is not None else \
            np.ones((self.n_units, n_channels), bool)
        self.channels, self.counts = _padded_channels(self.mask)
        if hasattr(analyzer, 'spike_units'):  # alfnwb's StreamedAnalyzer: the units and their grouping at hand
            self.units, (self.order, self.ends) = analyzer.spike_units, analyzer.by_unit
        else:
            self.units = analyzer.sorting.to_spike_vector()['unit_index']
            self.order, self.ends = group_spikes(self.units, self.n_units)
        self.ext: dict = {}  # ndx-spikesorting objects by SpikeSortingExtensions field
        self.units_metrics = None

    def rank(self, spikes: np.ndarray) -> np.ndarray:
        """Position of each given spike-vector entry in its unit's spike train.

        Each unit's stretch of the by-unit order is ascending: a binary search in it per chosen spike,
        unit by unit (the loop touches only the chosen spikes, never the spike train).
        """
        spikes = np.asarray(spikes, dtype=np.int64)
        units = self.units[spikes]
        starts = np.r_[0, self.ends[:-1]]
        out = np.empty(spikes.size, dtype=np.int64)
        for unit in np.unique(units):
            mine = units == unit
            out[mine] = np.searchsorted(self.order[starts[unit]:self.ends[unit]], spikes[mine])
        return out

    def data(self, values, chunk: int | None = 1 << 18):
        """A large dataset, chunked and compressed."""
        return dataio(values, self.compression, chunk=chunk)

    def row_blocks(self, rows):
        """A dataset made a block of rows at a time by ``rows.read(start, stop)`` (``shape``, ``dtype``):
        compressed in parallel as the blocks are made, in chunks of about :data:`ROW_CHUNK_BYTES`."""
        chunk_bytes = ROW_CHUNK_BYTES
        tail = tuple(rows.shape[1:])
        per_row = max(int(np.prod(tail, dtype=np.int64)) * np.dtype(rows.dtype).itemsize, 1)
        chunk = max(1, min(chunk_bytes // per_row, rows.shape[0]))
        return RowBlocks(rows.shape[0], tail, rows.dtype, rows.read, block=chunk).dataio(self.compression, chunk)

    def region(self, rows, description: str):
        """Rows of the file's electrodes table."""
        from hdmf.common import DynamicTableRegion

        return DynamicTableRegion(name='electrodes', data=np.asarray(rows, dtype=np.int64),
                                  description=description, table=self.nwbfile.electrodes)

    def histogram_counts(self, data: np.ndarray) -> np.ndarray:
        """Histogram counts in the smallest schema-valid integer type that holds them exactly."""
        data = np.asarray(data)
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for dtype in CORRELOGRAM_DTYPES:
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return data.astype(dtype, copy=False)  # a full probe's correlograms are 0.4-1.6 GB
        return data

    def per_spike(self, values: np.ndarray, description: str):
        """One value per spike, regrouped by unit: ``data`` and ``data_index``."""
        from hdmf.common import VectorData, VectorIndex

        data = VectorData(name='data', description=description, data=gather([(values, self.order)], self.compression))
        return data, VectorIndex(name='data_index', data=self.ends, target=data)

    def random_selection(self):
        """Random spikes (spike-vector indices), their units, their by-unit order and ragged ends."""
        sel = extension_array(self.analyzer, 'random_spikes', 'random_spikes_indices')
        sel_units = self.units[sel]
        sel_order, sel_ends = group_spikes(sel_units, self.n_units)
        return sel, sel_units, sel_order, sel_ends

    def per_random_spike(self, values: np.ndarray, description: str, chunk: int | None = 1 << 18):
        """(random spikes, features, sparse channels) -> rows of (features,) per spike and channel.

        Returns ``data``, its per-spike index, the electrodes row of each data row and the per-unit ends.
        """
        from hdmf.common import VectorData, VectorIndex

        _, sel_units, sel_order, sel_ends = self.random_selection()
        spike_units = sel_units[sel_order]
        width = self.channels.shape[1]
        per_spike = self.counts[spike_units]
        valid = np.arange(width)[None, :] < per_spike[:, None]
        rows = np.swapaxes(values[sel_order][:, :, :width], 1, 2)[valid]
        electrodes = (self.channels[spike_units][valid] + self.electrode_offset).astype(np.int64)
        data = VectorData(name='data', description=description, data=self.data(rows.astype(np.float32, copy=False), chunk=chunk))
        index = VectorIndex(name='data_index', data=np.cumsum(per_spike).astype(np.int64), target=data)
        return data, index, electrodes, sel_ends

    def unit_rows(self, description: str, name: str):
        """The probe's rows of the units table, in analyzer unit order."""
        from hdmf.common import DynamicTableRegion

        return DynamicTableRegion(name=name, data=np.arange(self.n_units, dtype=np.int64) + self.unit_offset,
                                  description=description, table=self.nwbfile.units)

    def metrics_table(self, name: str, df):
        """A per-unit metrics table (ndx-spikesorting) of a DataFrame indexed by unit id."""
        from ndx_spikesorting import UnitVectorData

        cols = [self.unit_rows('units table row of each metric row', 'unit')]
        cols += [UnitVectorData(name=str(c), description=f'IBL cluster metric {c} (clusters.metrics)',
                                data=_column(df[c])) for c in df.columns]
        return units_metrics_class()(name=name, columns=cols, description='IBL cluster metrics (clusters.metrics.pqt)')


def add_spike_sorting(nwbfile, analyzer, name: str, electrode_offset: int, unit_offset: int,
                      compression: str | None = 'gzip'):
    """Add one probe's analyzer as a SpikeSortingContainer in ``processing/ecephys``.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        With electrodes and units tables already built.
    analyzer : spikeinterface.SortingAnalyzer
        From :func:`alfnwb.analyzer.build_analyzer`: unit ids are the probe's cluster ids, channel ids
        its channel indices.
    name : str
        Container name: the probe name.
    electrode_offset, unit_offset : int
        First row of the probe in the electrodes and units tables.
    compression : str or None
        HDF5 filter of the large datasets.

    Returns
    -------
    ndx_spikesorting.SpikeSortingContainer
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_ANCESTOR_WARNING)
        return _add_spike_sorting(nwbfile, analyzer, name, electrode_offset, unit_offset, compression)


def _add_spike_sorting(nwbfile, analyzer, name, electrode_offset, unit_offset, compression):
    from ndx_spikesorting import SpikeSortingContainer, SpikeSortingExtensions

    from .session import ecephys_module

    ctx = WriteContext(nwbfile, analyzer, electrode_offset, unit_offset, compression)
    for ext_name, extension in REGISTRY.items():
        if analyzer.has_extension(ext_name):
            extension.write(ctx)
    extensions = SpikeSortingExtensions(**ctx.ext)
    if ctx.units_metrics is not None:
        extensions.add_units_metrics(ctx.units_metrics)
    n_channels = analyzer.get_num_channels()
    electrodes = ctx.region(np.arange(n_channels, dtype=np.int64) + electrode_offset,
                            f'electrodes of {name}, in the order of the analyzer channel ids (channel indices)')
    container = SpikeSortingContainer(
        name=name, sampling_frequency=float(analyzer.sampling_frequency), electrodes=electrodes,
        units_region=ctx.unit_rows(f'units of {name}, in the order of the analyzer unit ids (cluster ids)',
                                   'units_region'),
        sparsity_mask=dataio(ctx.mask, compression, chunk=None))
    container.spike_sorting_extensions = extensions
    ecephys_module(nwbfile).add(container)
    return container
