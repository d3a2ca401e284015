"""Read exported NWB files back: ALF-shaped dicts (the round trip), a SortingAnalyzer, a summary.

Every read goes through :class:`alfnwb.nwb.reader.ExportedFile` with the names of
:mod:`alfnwb.nwb.layout`; each analyzer extension is read by its entry in :mod:`alfnwb.extensions`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import NWBReadError
from .extensions import GROUP_TO_EXTENSION, REGISTRY
from .nwb import layout
from .nwb.reader import ExportedFile, decode, open_export, ragged_rows

__all__ = ['read_alf', 'read_alf_object', 'read_sorting_analyzer', 'info']

_U = layout.UNITS_PATH
_E = layout.ELECTRODES_PATH
#: Units columns that are not IBL metrics: the layout's own columns and their ragged indices.
_NOT_METRICS = set(layout.UNITS.names) | {f'{c.name}_index' for c in layout.UNITS.ragged}


def _channels(f: ExportedFile, e0: int, e1: int) -> dict:
    """``channels`` of a probe's electrodes rows, in SpikeSortingLoader's histology shape."""
    el = f[_E]
    channels = {'axial_um': el['rel_y'][e0:e1], 'lateral_um': el['rel_x'][e0:e1],
                'rawInd': el['raw_channel_index'][e0:e1], 'shank': el['shank'][e0:e1]}
    histology = f.column(_E, 'histology', e0, e1)
    if histology.size and histology[0] != 'none':
        for key, col in (('x', 'ibl_ml'), ('y', 'ibl_ap'), ('z', 'ibl_dv')):
            channels[key] = el[col][e0:e1] / 1e6  # um -> m from bregma, as brainbox
        channels['atlas_id'] = el['atlas_id'][e0:e1]
        channels['acronym'] = f.column(_E, 'location', e0, e1)
    return channels


def _spikes(f: ExportedFile, u0: int, u1: int, cluster_ids: np.ndarray) -> dict:
    """``spikes`` of units rows ``u0:u1``, in time order (ties by cluster)."""
    units = f[_U]
    start, stop, counts = f.ragged_range(_U, 'spike_times', u0, u1)
    times = units['spike_times'][start:stop]
    clu = np.repeat(cluster_ids, counts)
    order = np.lexsort((clu, times))
    spikes = {'times': times[order], 'clusters': clu[order]}
    for col in layout.UNITS.ragged:
        key = col.alf.split('.', 1)[1]
        if col.alf_object == 'spikes' and key != 'times' and col.name in units:
            spikes[key] = units[col.name][start:stop][order]
    return spikes


def _templates(f: ExportedFile, u0: int, u1: int, e0: int) -> dict:
    """``waveforms`` (V, ALF channel order) and ``waveformsChannels`` from ``waveform_mean``."""
    units = f[_U]
    column = 'sorter_template' if 'sorter_template' in units else 'waveform_mean'  # the sorter's, with waveforms.*
    if column not in units or u1 <= u0:
        return {}
    # stored peak channel first, in uV; ALF order is ascending channel index, in V
    e_start, e_stop, _ = f.ragged_range(_U, 'electrodes', u0, u1)
    wfc = (units['electrodes'][e_start:e_stop] - e0).reshape(u1 - u0, -1)
    perm = np.argsort(wfc, axis=1, kind='stable')
    wf = units[column][u0:u1] / np.float32(1e6)
    return {'waveformsChannels': np.take_along_axis(wfc, perm, axis=1),
            'waveforms': np.take_along_axis(wf, perm[:, None, :], axis=2)}


def read_alf(path: str | Path, probe: str | None = None) -> tuple[dict, dict, dict]:
    """Rebuild a probe's ``spikes``, ``clusters`` and ``channels`` from an exported NWB file alone.

    The dicts are shaped like ``SpikeSortingLoader.load_spike_sorting``'s output after alfnwb's
    normalisation (:class:`alfnwb.model.ProbeData`). Spikes come back in time order (ties by
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

    with open_export(path) as f:
        f.require('units', 'electrodes')
        erows, probe = f.probe_rows(_E, probe)
        e0, e1 = int(erows[0]), int(erows[-1]) + 1
        channels = _channels(f, e0, e1)
        units = f[_U]
        u0, u1 = f.unit_range(probe)
        cluster_ids = units['cluster_id'][u0:u1]
        spikes = _spikes(f, u0, u1, cluster_ids)
        clusters = {'channels': units['peak_channel'][u0:u1] - e0, 'depths': units['depth'][u0:u1],
                    'uuids': f.column(_U, 'cluster_uuid', u0, u1)}
        metrics = {'cluster_id': cluster_ids}
        for name in units.keys():
            if name in _NOT_METRICS or name.endswith('_index') or name == 'id':
                continue
            metrics[name] = f.column(_U, name, u0, u1)
        clusters['metrics'] = pd.DataFrame(metrics)
        clusters.update(_templates(f, u0, u1, e0))
    return spikes, clusters, channels


def _pandas_dtype(dataset) -> str:
    """The pandas dtype a waveforms.table column had (written in its description)."""
    import re

    found = re.search(r'\(pandas dtype (\w+)\)', decode([dataset.attrs.get('description', '')])[0])
    return found.group(1) if found else str(dataset.dtype)


def read_alf_object(path: str | Path, probe: str | None = None, obj: str = 'waveforms') -> dict:
    """An ALF object of a probe stored as published; today IBL's extracted waveforms (``waveforms``).

    Parameters
    ----------
    path : str or pathlib.Path
        The exported file (local path or URL).
    probe : str, optional
        Which probe, when the file has more than one.
    obj : str
        The ALF object: ``'waveforms'``.

    Returns
    -------
    dict
        ``traces`` (V, float32, per-cluster layout reshaped back to (clusters, waveforms, channels,
        samples)), ``templates``, ``table`` (DataFrame) and ``channels``, as
        ``SpikeSortingLoader.raw_waveforms()`` loaded them.
    """
    import pandas as pd

    if obj != 'waveforms':
        raise NWBReadError(f'{path}: ALF object {obj!r} is not stored as published (only waveforms)')
    with open_export(path) as f:
        _, probe = f.probe_rows(_E, probe)
        key = layout.ibl_waveforms_path(probe)
        if key not in f:
            raise NWBReadError(f'{path}: probe {probe} has no waveforms object (the sorting had no waveforms.*, or '
                               'the export was made without the waveforms extension)')
        group = f[key]
        skip = {'channels', 'traces', 'id'}
        names = [k for k in decode(group.attrs['colnames']) if k not in skip]
        table = pd.DataFrame({k: pd.Series(group[k][:]).astype(_pandas_dtype(group[k])) for k in names})
        traces, channels = group['traces'][:], group['channels'][:]
        templates = f[layout.ibl_waveforms_path(probe, 'waveform_templates')]['templates'][:]
        if 'v1' in f.provenance().get(probe, {}).get('waveforms', ''):  # per cluster: (clusters, waveforms, ...)
            traces = traces.reshape(templates.shape[0], -1, *traces.shape[1:])
    return {'traces': traces, 'templates': templates, 'table': table, 'channels': channels}


def info(path: str | Path) -> dict:
    """Summary of an exported file: session, and per probe sorter, revision, histology, units, regions.

    Returns
    -------
    dict
        ``session`` (eid, subject, lab, start, task protocol), ``trials`` (the number of trials, None
        without a trials table) and ``probes`` (a list of dicts).
    """
    with open_export(path) as f:
        f.require('units')
        prov = f.provenance()
        unit_probe = f.column(_U, 'probe_name')
        location = f.column(_U, 'location')
        label = f[_U]['label'][:] if f'{_U}/label' in f else np.full(unit_probe.size, np.nan)
        el_probe = f.column(_E, 'probe_name')
        el_loc = f.column(_E, 'location')
        containers = set(f.containers())
        probes = []
        for name in dict.fromkeys(el_probe):
            sel = unit_probe == name
            regions, counts = np.unique(location[sel], return_counts=True)
            top = sorted(zip(counts, regions), reverse=True)
            probes.append({
                'probe': name, **{k: v for k, v in prov.get(name, {}).items() if k != 'probe_name'},
                'channels': int((el_probe == name).sum()),
                'channel_regions': len(set(el_loc[el_probe == name]) - {layout.UNKNOWN, 'void'}),
                'units': int(sel.sum()), 'good_units': int(np.nansum(label[sel] == 1)),
                'unit_regions': {str(r): int(c) for c, r in top},
                'extensions': _extension_names(f[layout.container_path(name)]) if name in containers else [],
            })
        n_trials = f[f'{layout.TRIALS_PATH}/id'].shape[0] if layout.TRIALS_PATH in f else None
        return {'session': f.session(), 'trials': n_trials, 'probes': probes}


def _extension_names(container) -> list[str]:
    """SpikeInterface names of the extensions stored in a SpikeSortingContainer group."""
    if 'extensions' not in container:
        return []
    known = list(REGISTRY)
    names = [GROUP_TO_EXTENSION.get(k, k) for k in container['extensions'].keys()]
    return sorted(set(names), key=lambda k: (known.index(k) if k in known else len(known), k))


class ReadContext:
    """A probe's container being read back: the orderings every extension's ``read`` step needs."""

    def __init__(self, f: ExportedFile, group, probe: str):
        from .analyzer import memory_analyzer

        self.fs = float(group.attrs['sampling_frequency'])
        self.erows = group['electrodes'][:].astype(np.int64)
        self.urows = group['units_region'][:].astype(np.int64)
        self.n = self.urows.size
        self.u1 = int(self.urows.max()) + 1 if self.n else 0
        self.electrode_pos = np.full(int(self.erows.max()) + 1, -1, dtype=np.int64)
        self.electrode_pos[self.erows] = np.arange(self.erows.size)
        self.unit_ids = self._unit_ids(f)
        samples, counts = self._samples(f)
        self._orderings(samples, counts)
        self.mask = group['sparsity_mask'][:].astype(bool) if 'sparsity_mask' in group else \
            np.ones((self.n, self.erows.size), bool)
        self.width = int(self.mask.sum(axis=1).max()) if self.n else 0
        self.x = group['extensions'] if 'extensions' in group else {}
        self.selected = self.perm = None  # set by random_spikes
        self.analyzer = memory_analyzer(self.vector, self.fs, self.unit_ids, *self._channels(f, probe), self.mask,
                                        self._num_samples(f, probe, samples))
        self.decode = decode

    def _unit_ids(self, f: ExportedFile) -> np.ndarray:
        if not self.n:
            return np.zeros(0, np.int64)
        u0 = int(self.urows.min())
        return f[_U]['cluster_id'][u0:self.u1][self.urows - u0].astype(np.int64)

    def _channels(self, f: ExportedFile, probe: str):
        from .analyzer import probegroup

        el = f[_E]
        e0, e1 = int(self.erows.min()), int(self.erows.max()) + 1
        pick = self.erows - e0
        channel_ids = el['channel_index'][e0:e1][pick].astype(np.int64)
        return channel_ids, probegroup(el['rel_x'][e0:e1][pick], el['rel_y'][e0:e1][pick],
                                       el['shank'][e0:e1][pick], probe)

    def _samples(self, f: ExportedFile) -> tuple[np.ndarray, np.ndarray]:
        """The container's units in its own order (units_region), each train in spike_times order."""
        if 'spike_samples' not in f[_U]:
            raise NWBReadError(f'{f.label}: units have no spike_samples column: not an alfnwb analyzer export')
        u0 = int(self.urows.min()) if self.n else 0
        start, stop, counts_all = f.ragged_range(_U, 'spike_samples', u0, self.u1)
        samples_all = f[_U]['spike_samples'][start:stop].astype(np.int64)
        unit_starts = np.r_[0, np.cumsum(counts_all)[:-1]]
        sel = self.urows - u0
        counts = counts_all[sel]
        take = np.repeat(unit_starts[sel] - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        return samples_all[take], counts

    def _orderings(self, samples: np.ndarray, counts: np.ndarray) -> None:
        from .kernels import spike_vector

        self.vector, self.order = spike_vector(samples, np.repeat(np.arange(self.n), counts))
        self.to_vector = np.empty_like(self.order)
        self.to_vector[self.order] = np.arange(self.order.size)  # by-unit position -> spike vector position
        self.byunit_start = np.r_[0, np.cumsum(counts)[:-1]]

    def _num_samples(self, f: ExportedFile, probe: str, samples: np.ndarray) -> int:
        recorded = int(f.provenance().get(probe, {}).get('num_samples', 0) or 0)
        return recorded if recorded > 0 else int(samples.max() + 1) if samples.size else 0

    def ragged(self, group: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        return ragged_rows(self.x[group], name)

    def unpad(self, rows: np.ndarray, per_spike: np.ndarray) -> np.ndarray:
        """Rows of (features,) per spike and channel -> (spikes, features, width), zero padded."""
        valid = np.arange(self.width)[None, :] < per_spike[:, None]
        out = np.zeros((per_spike.size, self.width, rows.shape[1]), dtype=np.float32)
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
    with open_export(path) as f:
        names = f.containers()
        if probe is None:
            if len(names) != 1:
                raise NWBReadError(f'{path}: SortingAnalyzer containers {", ".join(names) or "none"}; '
                                   + ('name one (probe=...)' if names else 'export with --extensions'))
            probe = names[0]
        if probe not in names:
            raise NWBReadError(f'{path}: no SortingAnalyzer for probe {probe!r}; '
                               f'containers: {", ".join(names) or "none (export with --extensions)"}')
        ctx = ReadContext(f, f[layout.container_path(probe)], probe)
        for extension in REGISTRY.values():
            if any(g in ctx.x for g in extension.nwb_groups):
                extension.read(ctx)
    return ctx.analyzer
