"""Read exported NWB files back: ALF-shaped dicts (the round trip) and a summary (``alfnwb info``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import NWBReadError

_NOT_METRICS = {'spike_times', 'spike_times_index', 'spike_amplitudes', 'spike_amplitudes_index', 'spike_depths',
                'spike_depths_index', 'electrodes', 'electrodes_index', 'waveform_mean', 'probe_name', 'pid',
                'cluster_id', 'cluster_uuid', 'peak_channel', 'depth', 'location', 'beryl_acronym',
                'cosmos_acronym', 'spike_samples', 'spike_samples_index'}


def _decode(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in 'SO':
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr], dtype=object)
    return arr


def _open(path):
    import h5py

    try:
        return h5py.File(path, 'r')
    except OSError as e:
        raise NWBReadError(f'{path}: not a readable NWB/HDF5 file ({e})') from None


def _probe_rows(f, table: str, probe: str | None, path) -> tuple[np.ndarray, str]:
    names = _decode(f[f'{table}/probe_name'][:])
    probes = list(dict.fromkeys(names))
    if probe is None:
        if len(probes) != 1:
            raise NWBReadError(f'{path}: holds probes {", ".join(probes)}; name one (probe=...)')
        probe = probes[0]
    if probe not in probes:
        raise NWBReadError(f'{path}: no probe {probe!r}; probes: {", ".join(probes) or "none"}')
    return np.flatnonzero(names == probe), probe


def read_alf(path: str | Path, probe: str | None = None) -> tuple[dict, dict, dict]:
    """Rebuild a probe's ``spikes``, ``clusters`` and ``channels`` from an exported NWB file alone.

    The dicts are shaped like ``SpikeSortingLoader.load_spike_sorting``'s output after alfnwb's
    normalisation (:class:`alfnwb.loading.ProbeData`). Spikes come back in time order (ties by
    cluster). Reads the HDF5 datasets directly, slicing only the probe's rows.

    Parameters
    ----------
    path : str or pathlib.Path
        An NWB file written by alfnwb.
    probe : str, optional
        Probe name; needed when the file holds several.

    Returns
    -------
    spikes, clusters, channels : dict
    """
    import pandas as pd

    with _open(path) as f:
        if 'units' not in f or 'general/extracellular_ephys/electrodes' not in f:
            raise NWBReadError(f'{path}: no units or electrodes table: not an alfnwb export')
        el = f['general/extracellular_ephys/electrodes']
        erows, probe = _probe_rows(f, 'general/extracellular_ephys/electrodes', probe, path)
        e0, e1 = erows[0], erows[-1] + 1
        channels = {
            'axial_um': el['rel_y'][e0:e1], 'lateral_um': el['rel_x'][e0:e1],
            'rawInd': el['raw_channel_index'][e0:e1], 'shank': el['shank'][e0:e1],
        }
        histology = _decode(el['histology'][e0:e1])
        if histology.size and histology[0] != 'none':
            channels['x'] = el['ibl_ml'][e0:e1] / 1e6
            channels['y'] = el['ibl_ap'][e0:e1] / 1e6
            channels['z'] = el['ibl_dv'][e0:e1] / 1e6
            channels['atlas_id'] = el['atlas_id'][e0:e1]
            channels['acronym'] = _decode(el['location'][e0:e1])

        units = f['units']
        names = _decode(units['probe_name'][:])
        urows = np.flatnonzero(names == probe)  # a probe without clusters has no units rows
        u0, u1 = (int(urows[0]), int(urows[-1]) + 1) if urows.size else (0, 0)
        index = units['spike_times_index'][:]
        start = index[u0 - 1] if u0 > 0 else 0
        stop = index[u1 - 1] if u1 > 0 else 0
        counts = np.diff(np.r_[start, index[u0:u1]])
        cluster_ids = units['cluster_id'][u0:u1]
        times = units['spike_times'][start:stop]
        clu = np.repeat(cluster_ids, counts)
        order = np.lexsort((clu, times))
        spikes = {'times': times[order], 'clusters': clu[order]}
        for key, col in (('amps', 'spike_amplitudes'), ('depths', 'spike_depths'), ('samples', 'spike_samples')):
            if col in units:
                spikes[key] = units[col][start:stop][order]
        clusters = {
            'channels': units['peak_channel'][u0:u1] - e0,
            'depths': units['depth'][u0:u1],
            'uuids': _decode(units['cluster_uuid'][u0:u1]),
        }
        metrics = {'cluster_id': cluster_ids}
        for name in units.keys():
            if name in _NOT_METRICS or name.endswith('_index') or name == 'id':
                continue
            metrics[name] = _decode(units[name][u0:u1])
        clusters['metrics'] = pd.DataFrame(metrics)
        if 'waveform_mean' in units and u1 > u0:
            # stored peak channel first, in uV; ALF order is ascending channel index, in V
            eidx = units['electrodes_index'][:]
            e_start = eidx[u0 - 1] if u0 > 0 else 0
            wfc = (units['electrodes'][e_start:eidx[u1 - 1]] - e0).reshape(u1 - u0, -1)
            perm = np.argsort(wfc, axis=1, kind='stable')
            clusters['waveformsChannels'] = np.take_along_axis(wfc, perm, axis=1)
            wf = units['waveform_mean'][u0:u1] / np.float32(1e6)
            clusters['waveforms'] = np.take_along_axis(wf, perm[:, None, :], axis=2)
    return spikes, clusters, channels


def info(path: str | Path) -> dict:
    """Summary of an exported file: session, and per probe sorter, revision, histology, units, regions.

    Returns
    -------
    dict
        ``session`` (eid, subject, lab, start) and ``probes`` (a list of dicts).
    """
    with _open(path) as f:
        if 'units' not in f:
            raise NWBReadError(f'{path}: no units table: not an alfnwb export')
        session = {
            'eid': _decode([f['general/session_id'][()]])[0] if 'general/session_id' in f else '',
            'subject': _decode([f['general/subject/subject_id'][()]])[0] if 'general/subject/subject_id' in f else '',
            'lab': _decode([f['general/lab'][()]])[0] if 'general/lab' in f else '',
            'session_start_time': _decode([f['session_start_time'][()]])[0],
        }
        prov = {}
        ptab = 'processing/ecephys/alfnwb_provenance'
        if ptab in f:
            cols = {k: _decode(f[ptab][k][:]) for k in f[ptab].keys() if k != 'id'}
            for i, name in enumerate(cols['probe_name']):
                prov[name] = {k: v[i] for k, v in cols.items()}
        unit_probe = _decode(f['units/probe_name'][:])
        location = _decode(f['units/location'][:])
        label = f['units/label'][:] if 'units/label' in f else np.full(unit_probe.size, np.nan)
        el_probe = _decode(f['general/extracellular_ephys/electrodes/probe_name'][:])
        el_loc = _decode(f['general/extracellular_ephys/electrodes/location'][:])
        containers = set(_containers(f))
        probes = []
        for name in dict.fromkeys(el_probe):
            sel = unit_probe == name
            regions, counts = np.unique(location[sel], return_counts=True)
            top = sorted(zip(counts, regions), reverse=True)
            probes.append({
                'probe': name, **{k: v for k, v in prov.get(name, {}).items() if k != 'probe_name'},
                'channels': int((el_probe == name).sum()),
                'channel_regions': len(set(el_loc[el_probe == name]) - {'unknown', 'void'}),
                'units': int(sel.sum()), 'good_units': int(np.nansum(label[sel] == 1)),
                'unit_regions': {str(r): int(c) for c, r in top},
                'extensions': _extension_names(f[f'processing/ecephys/{name}']) if name in containers else [],
            })
    return {'session': session, 'probes': probes}


def _containers(f) -> list[str]:
    """Names of the SpikeSortingContainers in ``processing/ecephys``."""
    if 'processing/ecephys' not in f:
        return []
    mod = f['processing/ecephys']
    return [k for k in mod.keys()
            if _decode([mod[k].attrs.get('neurodata_type', b'')])[0] == 'SpikeSortingContainer']


#: ndx-spikesorting group -> SpikeInterface extension name
_NWB_TO_SI = {'pca_projections_by_channel': 'principal_components',
              'pca_projections_concatenated': 'principal_components'}


def _extension_names(container) -> list[str]:
    """SpikeInterface names of the extensions stored in a SpikeSortingContainer group."""
    from .analyzer import ALF_EXTENSIONS, RAW_EXTENSIONS

    if 'extensions' not in container:
        return []
    known = ALF_EXTENSIONS + RAW_EXTENSIONS
    names = [_NWB_TO_SI.get(k, k) for k in container['extensions'].keys()]
    return sorted(names, key=lambda k: (known.index(k) if k in known else len(known), k))


def _ragged_rows(g, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A ragged dataset's data and per-row counts (``name`` and ``name_index``)."""
    data = g[name][:]
    ends = g[f'{name}_index'][:].astype(np.int64)
    return data, np.diff(np.r_[0, ends])


def _unpad(rows: np.ndarray, per_spike: np.ndarray, width: int) -> np.ndarray:
    """Rows of (features,) per spike and channel -> (spikes, features, width), zero padded."""
    valid = np.arange(width)[None, :] < per_spike[:, None]
    out = np.zeros((per_spike.size, width, rows.shape[1]), dtype=np.float32)
    out[valid] = rows
    return np.swapaxes(out, 1, 2)


def read_sorting_analyzer(path: str | Path, probe: str | None = None):
    """A probe's SortingAnalyzer, in memory, with every extension stored in an alfnwb export.

    The sorting is rebuilt from the units' ``spike_samples`` (the probe's sample clock, exactly as
    exported), unit ids are the ``cluster_id`` of the probe's units and channel ids the
    ``channel_index`` of its electrodes. There is no recording: extensions that need traces cannot be
    recomputed, all stored ones are available.

    Parameters
    ----------
    path : str or pathlib.Path
        An NWB file written by ``alfnwb export`` with analyzer extensions.
    probe : str, optional
        Probe (container) name; needed when the file holds several.

    Returns
    -------
    spikeinterface.SortingAnalyzer
    """
    import pandas as pd

    from .analyzer import inject, memory_analyzer, ms_window, probegroup, spike_vector

    with _open(path) as f:
        names = _containers(f)
        if probe is None:
            if len(names) != 1:
                raise NWBReadError(f'{path}: SortingAnalyzer containers {", ".join(names) or "none"}; '
                                   + ('name one (probe=...)' if names else 'export with --extensions'))
            probe = names[0]
        if probe not in names:
            raise NWBReadError(f'{path}: no SortingAnalyzer for probe {probe!r}; '
                               f'containers: {", ".join(names) or "none (export with --extensions)"}')
        g = f[f'processing/ecephys/{probe}']
        fs = float(g.attrs['sampling_frequency'])
        erows = g['electrodes'][:].astype(np.int64)
        urows = g['units_region'][:].astype(np.int64)
        el = f['general/extracellular_ephys/electrodes']
        e0, e1 = int(erows.min()), int(erows.max()) + 1
        channel_ids = el['channel_index'][e0:e1][erows - e0].astype(np.int64)
        group = probegroup(el['rel_x'][e0:e1][erows - e0], el['rel_y'][e0:e1][erows - e0],
                           el['shank'][e0:e1][erows - e0], probe)
        electrode_pos = np.full(e1, -1, dtype=np.int64)
        electrode_pos[erows] = np.arange(erows.size)
        units = f['units']
        n = urows.size
        u0, u1 = (int(urows.min()), int(urows.max()) + 1) if n else (0, 0)
        unit_ids = units['cluster_id'][u0:u1][urows - u0].astype(np.int64) if n else np.zeros(0, np.int64)
        if 'spike_samples' not in units:
            raise NWBReadError(f'{path}: units have no spike_samples column: not an alfnwb analyzer export')
        index = units['spike_samples_index'][:].astype(np.int64)
        start = int(index[u0 - 1]) if u0 > 0 else 0
        stop = int(index[u1 - 1]) if u1 > 0 else 0
        counts_all = np.diff(np.r_[start, index[u0:u1]])
        samples_all = units['spike_samples'][start:stop].astype(np.int64)
        # the container's units in its own order (units_region), each unit's train in spike_times order
        unit_starts = np.r_[0, np.cumsum(counts_all)[:-1]]
        sel = urows - u0
        counts = counts_all[sel]
        take = np.repeat(unit_starts[sel] - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        samples = samples_all[take]
        byunit_units = np.repeat(np.arange(n), counts)
        vector, order = spike_vector(samples, byunit_units)
        to_vector = np.empty_like(order)
        to_vector[order] = np.arange(order.size)  # by-unit position -> spike vector position
        byunit_start = np.r_[0, np.cumsum(counts)[:-1]]
        num_samples = int(samples.max() + 1) if samples.size else 0
        ptab = 'processing/ecephys/alfnwb_provenance'
        if ptab in f and 'num_samples' in f[ptab]:
            rows = np.flatnonzero(_decode(f[ptab]['probe_name'][:]) == probe)
            if rows.size and int(f[ptab]['num_samples'][rows[0]]) > 0:
                num_samples = int(f[ptab]['num_samples'][rows[0]])
        mask = g['sparsity_mask'][:].astype(bool) if 'sparsity_mask' in g else np.ones((n, erows.size), bool)
        analyzer = memory_analyzer(vector, fs, unit_ids, channel_ids, group, mask, num_samples)
        x = g['extensions'] if 'extensions' in g else {}
        width = int(mask.sum(axis=1).max()) if n else 0

        selected = None
        if 'random_spikes' in x:
            local, per_unit = _ragged_rows(x['random_spikes'], 'random_spikes_indices')
            owner = np.repeat(np.arange(n), per_unit)
            global_idx = to_vector[byunit_start[owner] + local]
            perm = np.argsort(global_idx, kind='stable')
            selected = global_idx[perm]
            inject(analyzer, 'random_spikes', {'method': 'uniform', 'max_spikes_per_unit': int(per_unit.max(initial=0)),
                                               'margin_size': None, 'seed': None},
                   {'random_spikes_indices': selected})
        if 'waveforms' in x and selected is not None:
            w = x['waveforms']
            rows, per_spike = _ragged_rows(w, 'data')
            wf = _unpad(rows, per_spike, width)[perm]
            ms_before, ms_after = ms_window(int(w.attrs['peak_sample_index']), rows.shape[1], fs)
            inject(analyzer, 'waveforms', {'ms_before': ms_before, 'ms_after': ms_after, 'dtype': 'float32'},
                   {'waveforms': wf})
        if 'templates' in x:
            t = x['templates']
            rows, per_unit = _ragged_rows(t, 'data')
            dense = np.zeros((n, rows.shape[1], erows.size), dtype=np.float32)
            dense[np.repeat(np.arange(n), per_unit), :, electrode_pos[t['electrodes'][:]]] = rows
            ms_before, ms_after = ms_window(int(t.attrs['peak_sample_index']), rows.shape[1], fs)
            inject(analyzer, 'templates', {'ms_before': ms_before, 'ms_after': ms_after, 'operators': ['average']},
                   {'average': dense})
        if 'noise_levels' in x:
            inject(analyzer, 'noise_levels', {}, {'noise_levels': x['noise_levels/data'][:].astype(np.float32)})
        if 'unit_locations' in x:
            inject(analyzer, 'unit_locations', {'method': 'alf'}, {'unit_locations': x['unit_locations/data'][:]})
        for name, key, params in (('correlograms', 'ccgs', 'window_ms'), ('isi_histograms', 'isi_histograms', None)):
            if name in x:
                edges = x[f'{name}/bin_edges'][:]
                bin_ms = float(np.median(np.diff(edges))) if edges.size > 1 else 0.0
                window_ms = float(edges[-1] - edges[0])
                inject(analyzer, name, {'window_ms': window_ms, 'bin_ms': bin_ms, 'method': 'auto'},
                       {key: x[f'{name}/data'][:].astype(np.int64), 'bins': edges})
        if 'template_similarity' in x:
            inject(analyzer, 'template_similarity', {'method': 'cosine', 'max_lag_ms': 0.0, 'support': 'union'},
                   {'similarity': x['template_similarity/data'][:]})
        if 'spike_amplitudes' in x:
            inject(analyzer, 'spike_amplitudes', {}, {'amplitudes': x['spike_amplitudes/data'][:][order]})
        if 'spike_locations' in x:
            loc = x['spike_locations/data'][:][order]
            dtype = [(k, loc.dtype) for k in 'xyz'[:loc.shape[1]]]
            vec = np.zeros(loc.shape[0], dtype=dtype)
            for i, (k, _) in enumerate(dtype):
                vec[k] = loc[:, i]
            inject(analyzer, 'spike_locations', {'ms_before': 0.5, 'ms_after': 0.5, 'spike_retriever_kwargs': None,
                                                 'method': 'alf', 'method_kwargs': {}, 'seed': None},
                   {'spike_locations': vec})
        if 'pca_projections_by_channel' in x and selected is not None:
            rows, per_spike = _ragged_rows(x['pca_projections_by_channel'], 'data')
            proj = _unpad(rows, per_spike, width)[perm]
            inject(analyzer, 'principal_components', {'n_components': rows.shape[1], 'mode': 'by_channel_local',
                                                      'whiten': True, 'dtype': 'float32'},
                   {'pca_projection': proj})
        if 'quality_metrics' in x:
            q = x['quality_metrics']
            metric_units = q['unit'][:].astype(np.int64)  # units table rows
            pos = np.full(max(u1, int(metric_units.max(initial=0)) + 1), -1, dtype=np.int64)
            pos[urows] = np.arange(n)
            where = pos[metric_units]
            cols = {}
            for k in q.keys():
                if k in ('unit', 'id') or k.endswith('_index'):
                    continue
                values = _decode(q[k][:])
                out = np.empty(n, dtype=values.dtype)
                out[where] = values
                cols[k] = out
            metrics = pd.DataFrame(cols, index=unit_ids)
            inject(analyzer, 'quality_metrics', {'metric_names': list(cols), 'metric_params': {},
                                                 'metrics_to_compute': list(cols), 'delete_existing_metrics': False,
                                                 'source': 'ibl'}, {'metrics': metrics})
    return analyzer
