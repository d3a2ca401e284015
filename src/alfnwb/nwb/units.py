"""The units table, built in bulk from the ALF arrays of every probe.

No Python loop runs over units or spikes: spikes are grouped by unit with one stable sort per
probe (time order is kept within a unit), and ragged columns are written as data + index arrays.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..model import ProbeData
from .io import dataio, gather

FS = 30000.0

#: IBL cluster metrics (clusters.metrics.pqt) and what they mean, with their units.
METRIC_DESCRIPTIONS = {
    'amp_max': 'maximum spike amplitude (V)',
    'amp_min': 'minimum spike amplitude (V)',
    'amp_median': 'median spike amplitude, geometric (V)',
    'amp_std_dB': 'standard deviation of the log spike amplitudes (dB)',
    'contamination': 'contamination estimate from refractory period violations (fraction)',
    'contamination_alt': 'alternative contamination estimate (fraction)',
    'drift': 'cumulated absolute depth change per hour (um/h)',
    'missed_spikes_est': 'estimated fraction of spikes missed below the detection threshold',
    'noise_cutoff': 'noise cut-off metric of the amplitude distribution (lower is better)',
    'presence_ratio': 'fraction of 10 s bins with at least one spike',
    'presence_ratio_std': 'standard deviation of spike counts across 10 s bins',
    'slidingRP_viol': 'sliding refractory period test: 1 passes, 0 fails',
    'slidingRP_viol_forced': 'sliding refractory period test forced to a decision',
    'max_confidence': 'maximum confidence of the sliding refractory period test (%)',
    'min_contamination': 'minimum contamination of the sliding refractory period test (%)',
    'n_spikes_below2': 'number of spikes below 2 ms inter-spike interval',
    'spike_count': 'number of spikes',
    'firing_rate': 'mean firing rate (Hz)',
    'label': 'IBL quality score: fraction of passed criteria (1 = good unit)',
    'bitwise_fail': 'bitwise record of failed IBL criteria (0 = all passed)',
    'ks2_label': 'Kilosort label (good or mua)',
    'ks2_contamination_pct': 'Kilosort contamination (%)',
}

UNIT_COLUMNS = {
    'probe_name': 'probe the unit was recorded on',
    'pid': 'Alyx probe insertion id',
    'cluster_id': 'cluster index in the ALF clusters arrays of its probe',
    'cluster_uuid': 'cluster uuid (clusters.uuids)',
    'peak_channel': 'electrodes table row of the peak channel (clusters.channels)',
    'depth': 'depth of the cluster along the probe, um (clusters.depths)',
    'location': 'Allen CCF acronym at the peak channel (unknown without histology)',
    'beryl_acronym': 'Beryl region at the peak channel',
    'cosmos_acronym': 'Cosmos region at the peak channel',
}


def group_spikes(clusters: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Order of spikes grouped by cluster (time order kept within a cluster) and the ragged index.

    Parameters
    ----------
    clusters : numpy.ndarray
        Cluster of each spike (``spikes.clusters``), spikes in time order.
    n_clusters : int
        Number of clusters (clusters without spikes get empty ranges).

    Returns
    -------
    order : numpy.ndarray
        Permutation of the spikes.
    ends : numpy.ndarray
        Cumulative spike count per cluster: cluster i owns ``order[ends[i-1]:ends[i]]``.
    """
    counts = np.bincount(clusters, minlength=n_clusters)
    return stable_order(clusters, n_clusters), np.cumsum(counts)


def stable_order(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """``np.argsort(labels, kind='stable')``, as a radix sort when the labels fit 8 or 16 bits.

    NumPy sorts 8- and 16-bit integers stably with a radix sort (linear time), wider ones with
    timsort: for a probe's cluster indices (< 65536) the cast halves the time of the sort.
    """
    labels = np.asarray(labels)
    if n_labels <= 1 << 8:
        labels = labels.astype(np.uint8, copy=False)
    elif n_labels <= 1 << 16:
        labels = labels.astype(np.uint16, copy=False)
    return np.argsort(labels, kind='stable')


def _unit_electrodes(probe: ProbeData, offset: int):
    """Electrode rows per unit (peak channel first), the ragged index, and the reordered templates."""
    cl = probe.clusters
    peak = np.asarray(cl['channels']).astype(np.int64)
    n = peak.size
    wfc = cl.get('waveformsChannels')
    wf = cl.get('waveforms')
    if wfc is None or np.asarray(wfc).shape[0] != n:
        return peak[:, None] + offset, np.arange(1, n + 1), None
    wfc = np.asarray(wfc).astype(np.int64)
    hit = wfc == peak[:, None]
    has = hit.any(axis=1)
    pos = hit.argmax(axis=1)
    k = wfc.shape[1]
    j = np.arange(k)[None, :]
    # move the peak to the front, keep the others in their order
    perm = np.where(j == 0, pos[:, None], np.where(j <= pos[:, None], j - 1, j))
    perm[~has] = j[0]
    reordered = np.take_along_axis(wfc, perm, axis=1)
    templates = None
    if wf is not None and np.asarray(wf).shape[0] == n and np.asarray(wf).shape[-1] == k:
        templates = np.take_along_axis(np.asarray(wf), perm[:, None, :], axis=2)
    if has.all():
        return reordered + offset, np.arange(1, n + 1) * k, templates
    # units whose template channels miss the peak: the peak is prepended, no templates written
    warnings.warn(f'insertion {probe.provenance.pid}: clusters.waveformsChannels misses the peak channel of '
                  f'{int((~has).sum())} clusters; waveform_mean not written')
    full = np.concatenate([peak[:, None], reordered], axis=1)
    keep = np.ones_like(full, dtype=bool)
    keep[has, 0] = False  # there the reordered list already starts with the peak
    flat = full[keep]
    return flat + offset, np.cumsum(keep.sum(axis=1)), None


def add_units(nwbfile, probes: list[ProbeData], electrode_offsets: list[int],
              compression: str | None = 'gzip') -> None:
    """Build the units table of every probe at once and attach it to the file.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        With its electrodes table built by :func:`alfnwb.nwb.electrodes.add_electrodes`.
    probes : list of ProbeData
    electrode_offsets : list of int
        First electrodes row of each probe.
    compression : str or None
        HDF5 filter of the per-spike datasets ('gzip' by default, 'lzf', or None).
    """
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    times, amps, depths, samples, t_ends = [], [], [], [], []
    el_rows, el_ends, templates = [], [], []
    cols = {k: [] for k in UNIT_COLUMNS}
    metrics = []
    spike_base = unit_el_base = 0
    # region names of every electrodes row, converted once for all probes
    regions = {name: np.asarray(nwbfile.electrodes[name].data, dtype=object)
               for name in ('location', 'beryl_acronym', 'cosmos_acronym')}
    for probe, offset in zip(probes, electrode_offsets):
        sp, cl, prov = probe.spikes, probe.clusters, probe.provenance
        nc = probe.n_clusters
        order, ends = group_spikes(np.asarray(sp['clusters']), nc)
        # (array, order) pairs: the permuted data are gathered block by block while writing
        times.append((np.asarray(sp['times']), order))
        amps.append((np.asarray(sp['amps']) if 'amps' in sp else np.full(order.size, np.nan), order))
        depths.append((np.asarray(sp['depths']) if 'depths' in sp else np.full(order.size, np.nan), order))
        samples.append((np.asarray(sp['samples']), order) if 'samples' in sp else None)
        t_ends.append(ends + spike_base)
        spike_base += order.size
        rows, r_ends, tmpl = _unit_electrodes(probe, offset)
        el_rows.append(rows.ravel())
        el_ends.append(r_ends + unit_el_base)
        unit_el_base += rows.size
        templates.append(tmpl)
        peak = np.asarray(cl['channels']).astype(np.int64)
        cols['probe_name'].append(np.full(nc, prov.probe, dtype=object))
        cols['pid'].append(np.full(nc, prov.pid, dtype=object))
        cols['cluster_id'].append(np.arange(nc, dtype=np.int64))
        cols['cluster_uuid'].append(np.asarray(cl['uuids'], dtype=object) if 'uuids' in cl
                                    else np.full(nc, '', dtype=object))
        cols['peak_channel'].append(peak + offset)
        cols['depth'].append(np.asarray(cl['depths'], dtype=float) if 'depths' in cl else np.full(nc, np.nan))
        for name, column in regions.items():
            cols[name].append(column[peak + offset] if nc else np.empty(0, dtype=object))
        m = cl.get('metrics')
        if m is not None:
            m = m.reset_index(drop=True)
            if 'cluster_id' in m and not np.array_equal(np.asarray(m['cluster_id']), np.arange(nc)):
                m = m.set_index('cluster_id').reindex(np.arange(nc)).reset_index()
            metrics.append(m.drop(columns=['cluster_id'], errors='ignore'))
        else:
            import pandas as pd
            metrics.append(pd.DataFrame(index=np.arange(nc)))

    n_units = sum(p.n_clusters for p in probes)
    columns = []
    st = VectorData(name='spike_times', description='spike times (s, session clock; spikes.times exactly)',
                    data=gather(times, compression))
    # each index before its data: hdmf's length check drops iterator-backed columns as it meets them,
    # and an index met after its dropped target fails ("Found VectorIndex ... but not its target")
    columns += [VectorIndex(name='spike_times_index', data=np.concatenate(t_ends).astype(np.int64), target=st), st]
    sa = VectorData(name='spike_amplitudes', description='amplitude of each spike, volts (spikes.amps), '
                    'in the order of spike_times', data=gather(amps, compression))
    columns += [VectorIndex(name='spike_amplitudes_index', data=np.concatenate(t_ends).astype(np.int64), target=sa), sa]
    sd = VectorData(name='spike_depths', description='depth of each spike along the probe, um (spikes.depths), '
                    'in the order of spike_times', data=gather(depths, compression))
    columns += [VectorIndex(name='spike_depths_index', data=np.concatenate(t_ends).astype(np.int64), target=sd), sd]
    if samples and all(s is not None for s in samples):
        ss = VectorData(name='spike_samples', description='sample index of each spike on its probe\'s clock '
                        '(spikes.samples), in the order of spike_times', data=gather(samples, compression))
        columns += [VectorIndex(name='spike_samples_index', data=np.concatenate(t_ends).astype(np.int64),
                                target=ss), ss]
    el = DynamicTableRegion(name='electrodes', description='electrodes of the unit\'s waveform, peak channel first',
                            data=np.concatenate(el_rows).astype(np.int64), table=nwbfile.electrodes)
    columns += [el, VectorIndex(name='electrodes_index', data=np.concatenate(el_ends).astype(np.int64), target=el)]
    for name, desc in UNIT_COLUMNS.items():
        data = np.concatenate(cols[name])
        if data.dtype == object:  # text; an empty list has no dtype for hdmf to infer
            data = list(data) if data.size else np.asarray([], dtype=str)
        columns.append(VectorData(name=name, description=desc, data=data))
    columns += _metric_columns(metrics, n_units)
    kwargs = {}
    if templates and all(t is not None for t in templates) and len({t.shape[1:] for t in templates}) == 1:
        wf = np.concatenate(templates).astype(np.float32) * np.float32(1e6)  # V -> uV
        columns.append(VectorData(name='waveform_mean', description='cluster template (clusters.waveforms), uV, '
                                  'samples x electrodes in the order of the electrodes column',
                                  data=dataio(wf, compression, chunk=256)))
        kwargs = {'waveform_rate': FS, 'waveform_unit': 'microvolts'}
    units = Units(name='units', description='spike sorted units (ALF clusters) of every probe; ids unique across probes',
                  id=ElementIdentifiers(name='id', data=np.arange(n_units, dtype=np.int64)), columns=columns,
                  resolution=1 / FS, electrode_table=nwbfile.electrodes, **kwargs)
    nwbfile.units = units


def _metric_columns(metrics: list, n_units: int) -> list:
    """One column per IBL metric, present for all probes (missing values: NaN or '')."""
    import pandas as pd
    from hdmf.common import VectorData

    names = list(dict.fromkeys(c for m in metrics for c in m.columns))
    df = pd.concat([m.reindex(columns=names) for m in metrics], ignore_index=True)
    assert len(df) == n_units
    out = []
    for name in names:
        s = df[name]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            data = [('' if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)) for v in s]
            data = data if data else np.asarray([], dtype=str)
        elif pd.api.types.is_bool_dtype(s):
            data = s.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(s) and not s.isna().any():
            data = s.to_numpy(dtype=np.int64)
        else:
            data = s.to_numpy(dtype=float)
        out.append(VectorData(name=name, description=METRIC_DESCRIPTIONS.get(name, f'IBL cluster metric {name}'),
                              data=data))
    return out
