"""Read exported NWB files back: ALF-shaped dicts (the round trip) and a summary (``alfnwb info``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import NWBReadError

_NOT_METRICS = {'spike_times', 'spike_times_index', 'spike_amplitudes', 'spike_amplitudes_index', 'spike_depths',
                'spike_depths_index', 'electrodes', 'electrodes_index', 'waveform_mean', 'probe_name', 'pid',
                'cluster_id', 'cluster_uuid', 'peak_channel', 'depth', 'location', 'beryl_acronym',
                'cosmos_acronym'}


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
        urows, _ = _probe_rows(f, 'units', probe, path)
        u0, u1 = urows[0], urows[-1] + 1
        index = units['spike_times_index'][:]
        start = index[u0 - 1] if u0 > 0 else 0
        stop = index[u1 - 1] if u1 > 0 else 0
        counts = np.diff(np.r_[start, index[u0:u1]])
        cluster_ids = units['cluster_id'][u0:u1]
        times = units['spike_times'][start:stop]
        clu = np.repeat(cluster_ids, counts)
        order = np.lexsort((clu, times))
        spikes = {'times': times[order], 'clusters': clu[order]}
        for key, col in (('amps', 'spike_amplitudes'), ('depths', 'spike_depths')):
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
        if 'waveform_mean' in units:
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
            })
    return {'session': session, 'probes': probes}
