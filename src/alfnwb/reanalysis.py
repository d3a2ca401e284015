"""Atlas-aware reanalysis across exported files: find units by brain region, read only their spikes.

Sources: an NWB file (local path or HTTP(S) URL, read lazily with range requests), a list of them,
a folder (a dandiset laid out by ``alfnwb batch``), or a catalog (``alfnwb catalog``: one parquet
row per unit, so that queries open no NWB file).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AlfNwbError, NWBReadError
from .fileio import write_parquet_atomic
from .model import SAMPLING_FREQUENCY
from .nwb import layout
from .nwb.reader import ExportedFile, is_url, open_export, open_nwb

__all__ = ['read_units', 'load_spike_times', 'to_sorting', 'update_catalog', 'CatalogUpdate', 'MAPPINGS',
           'ID_COLUMNS', 'open_nwb']

MAPPINGS = tuple(layout.MAPPINGS)
#: Columns that identify a unit; always returned.
ID_COLUMNS = ['file', 'eid', 'pid', 'probe', 'cluster_id', 'unit_row']
CATALOG_NAME = 'catalog.parquet'
#: Units columns that are not per-unit values (ragged data, templates, and the ones renamed here).
_SKIP = {'id', 'waveform_mean', 'probe_name', 'location', 'peak_channel'} | {c.name for c in layout.UNITS.ragged}


def _units_of(f: ExportedFile) -> pd.DataFrame:
    """One row per unit of an open alfnwb file: ids, regions, coordinates and IBL metrics (no spikes)."""
    f.require('units', 'electrodes')
    u = f[layout.UNITS_PATH]
    el = f[layout.ELECTRODES_PATH]
    n = u['id'].shape[0]
    peak = u['peak_channel'][:].astype(np.int64)
    df = pd.DataFrame({
        'file': f.label, 'eid': f.text(layout.SESSION_PATHS['eid']), 'pid': f.column(layout.UNITS_PATH, 'pid'),
        'probe': f.column(layout.UNITS_PATH, 'probe_name'), 'cluster_id': u['cluster_id'][:].astype(np.int64),
        'unit_row': np.arange(n, dtype=np.int64), 'acronym': f.column(layout.UNITS_PATH, 'location'),
        'atlas_id': el['atlas_id'][:][peak].astype(np.int64) if n else np.zeros(0, np.int64),
    })
    for col in ('beryl_acronym', 'cosmos_acronym'):
        df[col] = f.column(layout.UNITS_PATH, col) if col in u else ''
    ml = el['ibl_ml'][:][peak] if n else np.zeros(0)
    df['hemisphere'] = np.where(np.isnan(ml), '', np.where(ml < 0, 'left', 'right'))
    for axis in ('x', 'y', 'z'):  # Allen CCF um (NWB axes: x AP, y DV, z ML)
        df[f'ccf_{axis}'] = el[axis][:][peak] if n else np.zeros(0)
    df['depth'] = u['depth'][:] if 'depth' in u else np.nan
    for name in u.keys():
        if name in _SKIP or name.endswith('_index') or name in df:
            continue
        ds = u[name]
        if ds.ndim == 1 and ds.shape[0] == n:
            df[name] = f.column(layout.UNITS_PATH, name)
    n_spikes = np.diff(np.r_[0, u['spike_times_index'][:]]) if n else np.zeros(0, np.int64)
    df['n_spikes'] = n_spikes.astype(np.int64)
    df['task_protocol'] = f.text(layout.SESSION_PATHS['task_protocol'])  # per file, for catalogs and filters
    df['n_trials'] = np.int64(f[f'{layout.TRIALS_PATH}/id'].shape[0] if layout.TRIALS_PATH in f else 0)
    return df


def _files_of(folder: Path) -> list[Path]:
    """NWB files of a folder, dot folders (``.alfnwb``: partial files, state) excluded."""
    return sorted(p for p in folder.rglob('*.nwb')
                  if not any(part.startswith('.') for part in p.relative_to(folder).parts))


def _read_sources(source) -> pd.DataFrame:
    if isinstance(source, (list, tuple)):
        frames = [_read_sources(s) for s in source]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ID_COLUMNS)
    if is_url(source):
        with open_export(source) as f:
            return _units_of(f)
    path = Path(source)
    if path.is_dir():
        files = _files_of(path)
        if not files:
            raise NWBReadError(f'{path}: no NWB files')
        return _read_sources([str(p) for p in files])
    if path.suffix in ('.parquet', '.pqt'):
        if not path.exists():
            raise NWBReadError(f'{path}: no such catalog')
        return pd.read_parquet(path).drop(columns=['file_size', 'file_mtime_ns'], errors='ignore')
    if not path.exists():
        raise NWBReadError(f'{path}: no such file')
    with open_export(path, label=str(path.resolve())) as f:
        return _units_of(f)


def region_ids(regions: str | int | Iterable[str | int]) -> np.ndarray:
    """Allen structure ids of acronyms or ids (``'VISp'``, ``385``, ``['HPF', 'TH']``)."""
    from .atlas import brain_regions

    br = brain_regions()
    items = [regions] if isinstance(regions, (str, int, np.integer)) else list(regions)
    out = []
    for r in items:
        if isinstance(r, (int, np.integer)) or (isinstance(r, str) and r.lstrip('-').isdigit()):
            rid = int(r)
            if rid not in set(br.id.tolist()):
                raise AlfNwbError(f'region id {rid} is not in the Allen structure tree')
        else:
            hit = np.flatnonzero(br.acronym == r)
            if hit.size == 0:
                raise AlfNwbError(f'region {r!r} is not an Allen acronym')
            rid = int(br.id[hit[0]])
        out.append(rid)
    return np.unique(np.abs(out))


def _mapped_ids(atlas_id: np.ndarray, mapping: str) -> np.ndarray:
    """Each unit's region id after remapping (unknown / void stay as they are)."""
    from .atlas import brain_regions

    ids = np.asarray(atlas_id, dtype=np.int64)
    if mapping == 'Allen':
        return ids
    br = brain_regions()
    known = np.isin(ids, br.id[br.id > 0])
    out = ids.copy()
    if known.any():
        out[known] = br.remap(ids[known], source_map='Allen', target_map=mapping)
    return out


def read_units(source, region=None, mapping: str = 'Allen', descendants: bool = True,
               min_label: float | None = None, columns: Sequence[str] | None = None,
               protocol: str | None = None) -> pd.DataFrame:
    """Units of exported files, optionally those of a brain region, one row per unit (no spike times).

    Parameters
    ----------
    source : str, pathlib.Path or list
        An NWB file, an HTTP(S) URL of one, a folder of them (a dandiset), a catalog
        (``.parquet``), or a list of any of these.
    region : str, int or list, optional
        Allen acronyms or structure ids.
    mapping : {'Allen', 'Beryl', 'Cosmos'}
        The parcellation the units' regions are remapped to before matching (iblatlas).
    descendants : bool
        A region selects every unit whose (remapped) region is it or below it in the Allen
        hierarchy (``Isocortex``, ``HPF``); False: only exact matches.
    min_label : float, optional
        Keep units whose IBL ``label`` is at least this (1: good units).
    columns : list of str, optional
        Columns to return besides the identifying ones (:data:`ID_COLUMNS`).
    protocol : str, optional
        Keep units of files whose task protocol (``general/protocol``) contains this text, e.g.
        ``'ephysChoiceWorld'``.

    Returns
    -------
    pandas.DataFrame
        Columns: file, eid, pid, probe, cluster_id, unit_row (row in the file's units table),
        acronym (Allen), atlas_id, beryl_acronym, cosmos_acronym, hemisphere (from the ML
        coordinate), ccf_x/ccf_y/ccf_z (Allen CCF um at the peak channel), depth, the IBL metrics
        n_spikes, and per file task_protocol and n_trials (0: no trials table).
    """
    if mapping not in MAPPINGS:
        raise AlfNwbError(f'mapping must be one of {", ".join(MAPPINGS)}, not {mapping!r}')
    df = _read_sources(source)
    keep = np.ones(len(df), dtype=bool)
    if region is not None and len(df):
        from .atlas import brain_regions

        targets = region_ids(region)
        if descendants:
            br = brain_regions()
            targets = np.unique(np.concatenate([br.descendants(int(t))['id'] for t in targets] + [targets]))
        keep &= np.isin(_mapped_ids(df['atlas_id'].to_numpy(), mapping), targets)
    if min_label is not None and len(df):
        label = pd.to_numeric(df['label'], errors='coerce') if 'label' in df else pd.Series(np.nan, index=df.index)
        keep &= (label >= min_label).to_numpy()
    if protocol is not None and len(df):
        task = df['task_protocol'] if 'task_protocol' in df else pd.Series('', index=df.index)
        keep &= task.fillna('').astype(str).str.contains(protocol, regex=False).to_numpy()
    df = df[keep].reset_index(drop=True)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise AlfNwbError(f'unknown column(s) {", ".join(missing)}; available: {", ".join(df.columns)}')
        df = df[ID_COLUMNS + [c for c in columns if c not in ID_COLUMNS]]
    return df


def load_spike_times(units: pd.DataFrame) -> list[np.ndarray]:
    """Spike times (s, session clock) of the selected units, reading only their slices of each file.

    Parameters
    ----------
    units : pandas.DataFrame
        From :func:`read_units` (columns ``file`` and ``unit_row``).

    Returns
    -------
    list of numpy.ndarray
        In the order of the rows.
    """
    out: list = [None] * len(units)
    for file, rows in units.groupby('file', sort=False).groups.items():
        positions = np.asarray([units.index.get_loc(i) for i in rows])
        unit_rows = units.loc[rows, 'unit_row'].to_numpy(dtype=np.int64)
        with open_nwb(file) as f:
            index = f[f'{layout.UNITS_PATH}/spike_times_index'][:]  # n_units integers: small
            data = f[f'{layout.UNITS_PATH}/spike_times']
            starts = np.r_[0, index][unit_rows]
            stops = index[unit_rows]
            order = np.argsort(unit_rows, kind='stable')
            # read runs of consecutive units in one slice each
            sorted_rows = unit_rows[order]
            breaks = np.flatnonzero(np.diff(sorted_rows) > 1) + 1
            for run in np.split(np.arange(order.size), breaks):
                if run.size == 0:
                    continue
                sel = order[run]
                a, b = int(starts[sel].min()), int(stops[sel].max())
                block = data[a:b] if b > a else np.zeros(0)
                for k in sel:
                    out[positions[k]] = block[starts[k] - a:stops[k] - a]
    return out


def to_sorting(units: pd.DataFrame, sampling_frequency: float = SAMPLING_FREQUENCY):
    """A SpikeInterface sorting of the selected units (samples = round(spike time x fs)).

    Unit ids are ``0..n-1`` in row order; the properties ``file``, ``pid``, ``probe``,
    ``cluster_id``, ``acronym`` and ``beryl_acronym`` say which unit each is.
    """
    from spikeinterface.core import NumpySorting

    times = load_spike_times(units)
    if not times:
        raise AlfNwbError('no units selected')
    samples = np.concatenate([np.round(t * sampling_frequency).astype(np.int64) for t in times])
    labels = np.repeat(np.arange(len(times)), [t.size for t in times])
    sorting = NumpySorting.from_samples_and_labels([samples], [labels], sampling_frequency,
                                                   unit_ids=np.arange(len(times)))
    for col in ('file', 'pid', 'probe', 'cluster_id', 'acronym', 'beryl_acronym'):
        if col in units:
            sorting.set_property(col, units[col].to_numpy())
    return sorting


@dataclass
class CatalogUpdate:
    """What an update of a catalog did."""

    path: Path
    n_files: int
    n_read: int
    n_removed: int
    n_units: int


def update_catalog(folder: str | Path, output: str | Path | None = None) -> CatalogUpdate:
    """Scan a folder of exported files into a catalog (one parquet row per unit), incrementally.

    Files already in the catalog with the same size and modification time are not opened again;
    rows of files that are gone are dropped.

    Parameters
    ----------
    folder : str or pathlib.Path
        A dandiset folder (or any folder of alfnwb NWB files).
    output : str or pathlib.Path, optional
        The catalog (default ``folder/.alfnwb/catalog.parquet``).

    Returns
    -------
    CatalogUpdate
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AlfNwbError(f'{folder}: no such folder')
    output = Path(output) if output else folder / '.alfnwb' / CATALOG_NAME
    output.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_parquet(output) if output.exists() else pd.DataFrame(columns=ID_COLUMNS + ['file_size',
                                                                                          'file_mtime_ns'])
    files = {str(p.resolve()): p.stat() for p in _files_of(folder)}
    kept, read = [], 0
    known = {f: g for f, g in old.groupby('file')} if len(old) else {}
    for file, st in files.items():
        g = known.get(file)
        if g is not None and int(g['file_size'].iloc[0]) == st.st_size and int(g['file_mtime_ns'].iloc[0]) == st.st_mtime_ns:
            kept.append(g)
            continue
        with open_export(file) as f:
            df = _units_of(f)
        read += 1
        kept.append(df.assign(file_size=np.int64(st.st_size), file_mtime_ns=np.int64(st.st_mtime_ns)))
    removed = len(set(known) - set(files))
    cat = pd.concat(kept, ignore_index=True) if kept else old.iloc[0:0]
    write_parquet_atomic(cat, output)
    return CatalogUpdate(path=output, n_files=len(files), n_read=read, n_removed=removed, n_units=len(cat))
