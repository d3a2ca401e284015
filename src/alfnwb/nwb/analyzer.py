"""A probe's SortingAnalyzer written with ndx-spikesorting: one SpikeSortingContainer per probe.

``ndx_spikesorting.add_sorting_analyzer_to_nwbfile`` handles one probe per file and matches
electrodes and units by position; here each probe's container points at its own rows of the shared
electrodes and units tables, and every conversion is vectorised (no loop over units or spikes).

Per-spike data (amplitudes, locations) is stored per unit in the order of that unit's
``spike_times`` (SpikeInterface's spike vector regrouped with a *stable* sort).
"""

from __future__ import annotations

import numpy as np

from .io import dataio

__all__ = ['add_spike_sorting', 'CORRELOGRAM_DTYPES']

# Regions built before their container joins the file warn that their table "does not share an
# ancestor"; they all point at the file's own electrodes/units tables, so the warning is noise.
_ANCESTOR_WARNING = 'The linked table for DynamicTableRegion'


#: Integer types tried for histogram counts, smallest first: the schema's ``int`` is at least 32 bits,
#: and the maximum count decides (lossless); gzip with shuffle then squeezes the empty high bytes.
CORRELOGRAM_DTYPES = (np.int32, np.int64)


def _counts(data: np.ndarray) -> np.ndarray:
    """Histogram counts in the smallest schema-valid integer type that holds them exactly."""
    data = np.asarray(data)
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in CORRELOGRAM_DTYPES:
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return data.astype(dtype)
    return data


def unit_grouping(unit_index: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable regrouping of spike-vector entries by unit, and the cumulative counts (ragged index)."""
    from .units import stable_order

    return stable_order(unit_index, n_units), np.cumsum(np.bincount(unit_index, minlength=n_units)).astype(np.int64)


def _padded_channels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's sparse channels ascending, padded: (n_units, max_channels), and the counts."""
    counts = mask.sum(axis=1)
    width = int(counts.max()) if counts.size else 0
    channels = np.argsort(~mask, axis=1, kind='stable')[:, :width]
    return channels, counts


def _ragged_per_spike(values: np.ndarray, spike_units: np.ndarray, channels: np.ndarray,
                      counts: np.ndarray, offset: int):
    """(spikes, features, channels) -> rows of (features,) for each spike's sparse channels."""
    width = channels.shape[1]
    per_spike = counts[spike_units]
    valid = np.arange(width)[None, :] < per_spike[:, None]
    rows = np.swapaxes(values[:, :, :width], 1, 2)[valid]
    electrodes = (channels[spike_units][valid] + offset).astype(np.int64)
    return rows, electrodes, np.cumsum(per_spike).astype(np.int64)


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
    from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
    from ndx_spikesorting import (Correlograms, ISIHistograms, NoiseLevels, PCAProjectionsByChannel,
                                  PCAProjectionsConcatenated, RandomSpikes, SpikeAmplitudes, SpikeLocations,
                                  SpikeSortingContainer, SpikeSortingExtensions, TemplateSimilarity, Templates,
                                  UnitLocations, UnitsMetrics, UnitVectorData, Waveforms)

    from .session import ecephys_module

    n_units, n_channels = len(analyzer.unit_ids), analyzer.get_num_channels()
    mask = analyzer.sparsity.mask if analyzer.sparsity is not None else np.ones((n_units, n_channels), bool)
    channels, counts = _padded_channels(mask)
    vector = analyzer.sorting.to_spike_vector()
    order, ends = unit_grouping(vector['unit_index'], n_units)

    def has(ext):
        return analyzer.has_extension(ext)

    def region(rows, description):
        return DynamicTableRegion(name='electrodes', data=np.asarray(rows, dtype=np.int64),
                                  description=description, table=nwbfile.electrodes)

    ext = {}
    random_spikes = None
    if has('random_spikes'):
        sel = analyzer.get_extension('random_spikes').get_data()
        starts = ends - np.bincount(vector['unit_index'], minlength=n_units)
        rank = np.empty(vector.size, dtype=np.int64)
        rank[order] = np.arange(vector.size) - np.repeat(starts, np.diff(np.r_[0, ends]))
        sel_units = vector['unit_index'][sel]
        sel_order, sel_ends = unit_grouping(sel_units, n_units)
        data = VectorData(name='random_spikes_indices', data=dataio(rank[sel][sel_order], compression),
                          description='index of each selected spike in its unit\'s spike train (units.spike_times)')
        random_spikes = ext['random_spikes'] = RandomSpikes(
            random_spikes_indices=data,
            random_spikes_indices_index=VectorIndex(name='random_spikes_indices_index', data=sel_ends, target=data))
    if has('templates'):
        t = analyzer.get_extension('templates')
        dense = t.get_data(operator='average')  # (units, samples, channels), uV
        width = channels.shape[1]
        per_unit = np.take_along_axis(np.swapaxes(dense, 1, 2), channels[:, :, None], axis=1)  # (u, width, s)
        valid = np.arange(width)[None, :] < counts[:, None]
        data = VectorData(name='data', description='template of each unit on each of its sparse channels, uV',
                          data=dataio(per_unit[valid].astype(np.float32), compression, chunk=4096))
        ext['templates'] = Templates(
            peak_sample_index=int(t.nbefore), data=data,
            data_index=VectorIndex(name='data_index', data=np.cumsum(counts).astype(np.int64), target=data),
            electrodes=region(channels[valid] + electrode_offset, 'electrode of each template row'))
    if has('waveforms'):
        w = analyzer.get_extension('waveforms')
        wf = w.get_data()  # (random spikes, samples, sparse channels), uV
        sel = analyzer.get_extension('random_spikes').get_data()
        sel_units = vector['unit_index'][sel]
        sel_order, sel_ends = unit_grouping(sel_units, n_units)
        rows, electrodes, spike_ends = _ragged_per_spike(wf[sel_order], sel_units[sel_order], channels, counts,
                                                         electrode_offset)
        data = VectorData(name='data', description='waveform of each random spike on each sparse channel, uV',
                          data=dataio(rows.astype(np.float32), compression, chunk=4096))
        index = VectorIndex(name='data_index', data=spike_ends, target=data)
        ext['waveforms'] = Waveforms(
            peak_sample_index=int(w.nbefore), data=data, data_index=index,
            data_index_index=VectorIndex(name='data_index_index', data=sel_ends, target=index),
            electrodes=region(electrodes, 'electrode of each waveform row'), random_spikes=random_spikes)
    if has('noise_levels'):
        ext['noise_levels'] = NoiseLevels(data=np.asarray(analyzer.get_extension('noise_levels').get_data(),
                                                          dtype=np.float32))
    if has('unit_locations'):
        ext['unit_locations'] = UnitLocations(data=np.asarray(analyzer.get_extension('unit_locations').get_data()))
    if has('correlograms'):
        ccg, edges = analyzer.get_extension('correlograms').get_data()
        ext['correlograms'] = Correlograms(data=dataio(_counts(ccg), compression, chunk=None),
                                           bin_edges=np.asarray(edges, dtype=np.float64))
    if has('isi_histograms'):
        isi, edges = analyzer.get_extension('isi_histograms').get_data()
        ext['isi_histograms'] = ISIHistograms(data=dataio(_counts(isi), compression, chunk=None),
                                              bin_edges=np.asarray(edges, dtype=np.float64))
    if has('template_similarity'):
        ext['template_similarity'] = TemplateSimilarity(
            data=dataio(np.asarray(analyzer.get_extension('template_similarity').get_data()), compression,
                        chunk=None))
    for si_name, cls in (('spike_amplitudes', SpikeAmplitudes), ('spike_locations', SpikeLocations)):
        if not has(si_name):
            continue
        values = analyzer.get_extension(si_name).get_data()
        if values.dtype.names:
            values = np.stack([values[k] for k in values.dtype.names], axis=1)
        data = VectorData(name='data', description=f'{si_name} of each spike, in the order of units.spike_times',
                          data=dataio(values[order], compression))
        ext[si_name] = cls(data=data, data_index=VectorIndex(name='data_index', data=ends, target=data))
    if has('principal_components'):
        pc = analyzer.get_extension('principal_components')
        proj = pc.get_data()  # (random spikes, components, sparse channels) or (random spikes, components)
        sel = analyzer.get_extension('random_spikes').get_data()
        sel_units = vector['unit_index'][sel]
        sel_order, sel_ends = unit_grouping(sel_units, n_units)
        if proj.ndim == 3:
            rows, electrodes, spike_ends = _ragged_per_spike(proj[sel_order], sel_units[sel_order], channels,
                                                             counts, electrode_offset)
            data = VectorData(name='data', description='projection of each random spike on each sparse channel',
                              data=dataio(rows.astype(np.float32), compression))
            index = VectorIndex(name='data_index', data=spike_ends, target=data)
            ext['pca_projections_by_channel'] = PCAProjectionsByChannel(
                data=data, data_index=index,
                data_index_index=VectorIndex(name='data_index_index', data=sel_ends, target=index),
                electrodes=region(electrodes, 'electrode of each projection row'), waveforms=ext['waveforms'])
        else:
            data = VectorData(name='data', description='projection of each random spike',
                              data=dataio(proj[sel_order].astype(np.float32), compression))
            ext['pca_projections_concatenated'] = PCAProjectionsConcatenated(
                data=data, data_index=VectorIndex(name='data_index', data=sel_ends, target=data),
                waveforms=ext['waveforms'])

    extensions = SpikeSortingExtensions(**ext)
    if has('quality_metrics'):
        df = analyzer.get_extension('quality_metrics').get_data()
        unit = DynamicTableRegion(name='unit', data=np.arange(n_units, dtype=np.int64) + unit_offset,
                                  description='units table row of each metric row', table=nwbfile.units)
        cols = [unit] + [UnitVectorData(name=str(c), description=f'IBL cluster metric {c} (clusters.metrics)',
                                        data=_column(df[c])) for c in df.columns]
        extensions.add_units_metrics(UnitsMetrics(name='quality_metrics', columns=cols,
                                                  description='IBL cluster metrics (clusters.metrics.pqt)'))
    units_region = DynamicTableRegion(name='units_region', data=np.arange(n_units, dtype=np.int64) + unit_offset,
                                      description=f'units of {name}, in the order of the analyzer unit ids '
                                      '(cluster ids)', table=nwbfile.units)
    electrodes = region(np.arange(n_channels, dtype=np.int64) + electrode_offset,
                        f'electrodes of {name}, in the order of the analyzer channel ids (channel indices)')
    container = SpikeSortingContainer(name=name, sampling_frequency=float(analyzer.sampling_frequency),
                                      electrodes=electrodes, units_region=units_region,
                                      sparsity_mask=dataio(mask, compression, chunk=None))
    container.spike_sorting_extensions = extensions
    ecephys_module(nwbfile).add(container)
    return container


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
