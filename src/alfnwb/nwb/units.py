"""The units table, built in bulk from the ALF arrays of every probe.

No Python loop runs over units or spikes: spikes are grouped by unit with one stable sort per
probe (time order is kept within a unit), and ragged columns are written as data + index arrays.
Column names and descriptions come from :mod:`alfnwb.nwb.layout`.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataWarning
from ..model import DiskColumn, ProbeData
from . import layout
from .chunks import dataio, gather

#: IBL cluster metric -> description (with its unit), from the layout.
METRIC_DESCRIPTIONS = {c.name: c.description for c in layout.METRICS}


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
    warnings.warn(DataWarning(f'insertion {probe.provenance.pid}: clusters.waveformsChannels misses the peak '
                              f'channel of {int((~has).sum())} clusters; waveform_mean not written'))
    full = np.concatenate([peak[:, None], reordered], axis=1)
    keep = np.ones_like(full, dtype=bool)
    keep[has, 0] = False  # there the reordered list already starts with the peak
    flat = full[keep]
    return flat + offset, np.cumsum(keep.sum(axis=1)), None


def _text(data: np.ndarray):
    """Text as hdmf writes it; an empty list has no dtype for hdmf to infer."""
    return (list(data) if data.size else np.asarray([], dtype=str)) if data.dtype == object else data


def _info_columns(probe: ProbeData, offset: int, regions: dict) -> dict[str, np.ndarray]:
    """The per-unit columns of :data:`layout.UNIT_INFO` for one probe."""
    cl, prov, nc = probe.clusters, probe.provenance, probe.n_clusters
    peak = np.asarray(cl['channels']).astype(np.int64)
    cols = {
        'probe_name': np.full(nc, prov.probe, dtype=object), 'pid': np.full(nc, prov.pid, dtype=object),
        'cluster_id': np.arange(nc, dtype=np.int64),
        'cluster_uuid': np.asarray(cl['uuids'], dtype=object) if 'uuids' in cl else np.full(nc, '', dtype=object),
        'peak_channel': peak + offset,
        'depth': np.asarray(cl['depths'], dtype=float) if 'depths' in cl else np.full(nc, np.nan),
    }
    for name, column in regions.items():
        cols[name] = column[peak + offset] if nc else np.empty(0, dtype=object)
    return cols


def _spike_pieces(probe: ProbeData) -> tuple[dict, np.ndarray]:
    """(array, order, ALF dtype) of each per-spike column (gathered block by block while writing) and the ends."""
    sp = probe.spikes
    order, ends = probe.by_cluster()
    pieces = {}
    for col in layout.UNITS.ragged:
        key = col.alf.split('.', 1)[1]
        if col.alf_object != 'spikes':
            continue
        if key in sp:  # an array, or a DiskColumn already in this order (ProbeData.hold_on_disk)
            held = sp[key] if isinstance(sp[key], DiskColumn) else np.asarray(sp[key])
            pieces[col.name] = (held, order, probe.alf_dtype(key))
        elif key in ('amps', 'depths'):  # written as NaN; spike_samples is left out when absent
            pieces[col.name] = (np.full(order.size, np.nan), order, np.dtype(float))
    return pieces, ends


def _concat_ends(ends: list) -> np.ndarray:
    """Per-probe ragged ends (cumulative counts) as one index over all probes."""
    bases = np.cumsum([0] + [int(e[-1]) if e.size else 0 for e in ends])
    return np.concatenate([e + b for e, b in zip(ends, bases)]).astype(np.int64) if ends else np.zeros(0, np.int64)


def _ragged(name: str, pieces: list, ends: np.ndarray, compression: str | None) -> list:
    """A ragged column from (array, order, ALF dtype) pieces: its index first, then the data."""
    from hdmf.common import VectorData, VectorIndex

    dtype = np.result_type(*[d for _, _, d in pieces])  # the ALF dtype, whatever the array is held as
    data = VectorData(name=name, description=layout.UNITS[name].description,
                      data=gather([(a, o) for a, o, _ in pieces], compression, dtype=dtype))
    # each index before its data: hdmf's length check drops iterator-backed columns as it meets them,
    # and an index met after its dropped target fails ("Found VectorIndex ... but not its target")
    return [VectorIndex(name=f'{name}_index', data=ends, target=data), data]


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

    # region names of every electrodes row, converted once for all probes
    regions = {name: np.asarray(nwbfile.electrodes[name].data, dtype=object)
               for name in ('location', 'beryl_acronym', 'cosmos_acronym')}
    spikes = [_spike_pieces(p) for p in probes]
    ends = _concat_ends([e for _, e in spikes])
    columns = []
    for col in layout.UNITS.ragged:
        if col.alf_object == 'spikes' and all(col.name in pieces for pieces, _ in spikes):
            columns += _ragged(col.name, [pieces[col.name] for pieces, _ in spikes], ends, compression)
    electrodes = [_unit_electrodes(p, o) for p, o in zip(probes, electrode_offsets)]
    el = DynamicTableRegion(name='electrodes', description=layout.UNITS['electrodes'].description,
                            data=np.concatenate([r.ravel() for r, _, _ in electrodes]).astype(np.int64),
                            table=nwbfile.electrodes)
    columns += [el, VectorIndex(name='electrodes_index', data=_concat_ends([e for _, e, _ in electrodes]), target=el)]
    info = [_info_columns(p, o, regions) for p, o in zip(probes, electrode_offsets)]
    columns += [VectorData(name=c.name, description=c.description, data=_text(np.concatenate([i[c.name] for i in info])))
                for c in layout.UNIT_INFO]
    n_units = sum(p.n_clusters for p in probes)
    columns += _metric_columns([p.cluster_metrics() for p in probes], n_units)
    columns, kwargs = _waveform_mean(columns, probes, [t for _, _, t in electrodes], compression)
    if kwargs and any(p.waveforms is not None for p in probes):
        columns = _extracted_waveforms(columns, probes, [r for r, _, _ in electrodes], electrode_offsets, compression)
    nwbfile.units = Units(name='units', description=layout.UNITS.description,
                          id=ElementIdentifiers(name='id', data=np.arange(n_units, dtype=np.int64)), columns=columns,
                          resolution=1 / layout.WAVEFORM_RATE, electrode_table=nwbfile.electrodes, **kwargs)


def _waveform_mean(columns: list, probes: list[ProbeData], templates: list,
                   compression: str | None) -> tuple[list, dict]:
    """Add ``waveform_mean`` when every probe has templates of one shape (one column for all probes)."""
    from hdmf.common import VectorData

    if not templates or any(t is None for t in templates):
        return columns, {}  # a probe without templates: _unit_electrodes said why, if it was a defect
    shapes = [t.shape[1:] for t in templates]
    if len(set(shapes)) != 1:
        for probe, shape in zip(probes, shapes):
            warnings.warn(DataWarning(
                f'insertion {probe.provenance.pid}: clusters.waveforms is {shape[0]} samples x {shape[1]} channels, '
                f'other probes of the file differ ({", ".join(sorted({f"{a}x{b}" for a, b in shapes}))}): '
                'waveform_mean not written for any probe (the templates stay in the analyzer extension)'))
        return columns, {}
    wf = np.concatenate(templates).astype(np.float32) * np.float32(1e6)  # V -> uV
    columns = columns + [VectorData(name='waveform_mean', description=layout.UNITS['waveform_mean'].description,
                                    data=dataio(wf, compression, chunk=256))]
    return columns, {'waveform_rate': layout.WAVEFORM_RATE, 'waveform_unit': 'microvolts'}


def _extracted_waveforms(columns: list, probes: list[ProbeData], electrodes: list, offsets: list[int],
                         compression: str | None) -> list:
    """``waveform_mean``/``waveform_sd``/``waveform_median`` from IBL's extracted waveforms; the sorter's
    templates move to ``sorter_template`` (called once ``waveform_mean`` holds them for every probe)."""
    from hdmf.common import VectorData

    from .waveforms import unit_waveform_columns

    n_samples = next(np.asarray(p.waveforms['traces']).shape[-1] for p in probes if p.waveforms is not None)
    per_probe = [unit_waveform_columns(p, np.asarray(r).reshape(p.n_clusters, -1) - o, n_samples)
                 for p, r, o in zip(probes, electrodes, offsets)]
    out = []
    for col in columns:
        if col.name == 'waveform_mean':
            col = VectorData(name='sorter_template', description=layout.UNITS['sorter_template'].description,
                             data=col.data)
        out.append(col)
    for name in ('waveform_mean', 'waveform_sd', 'waveform_median'):
        out.append(VectorData(name=name, description=layout.UNITS[name].description,
                              data=dataio(np.concatenate([c[name] for c in per_probe]), compression, chunk=256)))
    return out


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
        out.append(VectorData(name=name, description=layout.metric_description(name),
                              data=data))
    return out
