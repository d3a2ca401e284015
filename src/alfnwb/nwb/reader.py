"""The one low-level reader of exported files (h5py), shared by every public reader.

:func:`alfnwb.read_alf`, :func:`alfnwb.read_sorting_analyzer`, :func:`alfnwb.info`,
:func:`alfnwb.read_units` and the plots read files through :class:`ExportedFile`: it opens local
files and HTTP(S) URLs (lazily, by range requests), finds a probe's rows, slices ragged columns and
decodes text, with the paths and names of :mod:`alfnwb.nwb.layout`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import NWBReadError
from . import layout

__all__ = ['ExportedFile', 'open_export', 'open_nwb', 'is_url', 'decode', 'ragged_rows']


def decode(values) -> np.ndarray:
    """HDF5 text (bytes or str) as an object array of str; other arrays unchanged."""
    arr = np.asarray(values)
    if arr.dtype.kind in 'SO':
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr], dtype=object)
    return arr


def is_url(source) -> bool:
    """Whether ``source`` is an HTTP(S) URL."""
    return isinstance(source, str) and source.split('://', 1)[0].lower() in ('http', 'https')


@contextlib.contextmanager
def open_nwb(source: str | Path, block_size: int = 1 << 14):
    """An h5py.File on a local NWB file, or on an HTTP(S) URL read lazily by range requests (fsspec).

    Parameters
    ----------
    source : str or pathlib.Path
    block_size : int
        Bytes per HTTP range request (blocks are cached): only the blocks that hold the metadata
        and the datasets actually read are fetched.
    """
    import h5py

    if is_url(source):
        import fsspec

        fs = fsspec.filesystem('http')
        try:
            handle = fs.open(source, 'rb', block_size=block_size, cache_type='blockcache')
        except (OSError, FileNotFoundError) as e:
            raise NWBReadError(f'{source}: cannot open ({e})') from None
        with handle, h5py.File(handle, 'r') as f:
            yield f
        return
    try:
        f = h5py.File(source, 'r')
    except OSError as e:
        raise NWBReadError(f'{source}: not a readable NWB/HDF5 file ({e})') from None
    with f:
        yield f


@contextlib.contextmanager
def open_export(source: str | Path, label: str | None = None):
    """An :class:`ExportedFile` on a local path or URL; ``label`` names it in errors (default: source)."""
    with open_nwb(source) as f:
        yield ExportedFile(f, str(source) if label is None else label)


def ragged_rows(group, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole ragged dataset of a group: its data and per-row counts (``name`` and ``name_index``)."""
    data = group[name][:]
    ends = group[f'{name}_index'][:].astype(np.int64)
    return data, np.diff(np.r_[0, ends])


class ExportedFile:
    """An open alfnwb file: tables by layout name, a probe's rows, ragged slices, decoded text."""

    _TABLES = {'units': layout.UNITS_PATH, 'electrodes': layout.ELECTRODES_PATH}

    def __init__(self, h5, label: str):
        self.h5 = h5
        self.label = label

    def __contains__(self, path: str) -> bool:
        return path in self.h5

    def __getitem__(self, path: str):
        return self.h5[path]

    def require(self, *tables: str) -> None:
        """Fail unless the named tables (``units``, ``electrodes``) are there: not an alfnwb export."""
        if any(self._TABLES[t] not in self.h5 for t in tables):
            raise NWBReadError(f'{self.label}: no {" or ".join(tables)} table: not an alfnwb export')

    def text(self, path: str) -> str:
        """A scalar text dataset, '' when absent."""
        return decode([self.h5[path][()]])[0] if path in self.h5 else ''

    def session(self) -> dict:
        """eid, subject, lab and session start time."""
        return {k: self.text(p) for k, p in layout.SESSION_PATHS.items()}

    def column(self, table: str, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of a table's column, text decoded."""
        return decode(self.h5[f'{table}/{name}'][start:stop])

    def probe_rows(self, table: str, probe: str | None) -> tuple[np.ndarray, str]:
        """Rows of a probe in a table with a ``probe_name`` column; with no probe, the file's only one."""
        names = self.column(table, 'probe_name')
        probes = list(dict.fromkeys(names))
        if probe is None:
            if len(probes) != 1:
                raise NWBReadError(f'{self.label}: holds probes {", ".join(probes)}; name one (probe=...)')
            probe = probes[0]
        if probe not in probes:
            raise NWBReadError(f'{self.label}: no probe {probe!r}; probes: {", ".join(probes) or "none"}')
        return np.flatnonzero(names == probe), probe

    def unit_range(self, probe: str) -> tuple[int, int]:
        """First and past-the-last units rows of a probe (a probe without clusters has none: (0, 0))."""
        rows = np.flatnonzero(self.column(layout.UNITS_PATH, 'probe_name') == probe)
        return (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)

    def ragged_range(self, table: str, name: str, r0: int, r1: int) -> tuple[int, int, np.ndarray]:
        """Data range of rows ``r0:r1`` of a ragged column and the per-row counts."""
        index = self.h5[f'{table}/{name}_index'][:].astype(np.int64)
        start = int(index[r0 - 1]) if r0 > 0 else 0
        stop = int(index[r1 - 1]) if r1 > 0 else 0
        return start, stop, np.diff(np.r_[start, index[r0:r1]])

    def provenance(self) -> dict[str, dict]:
        """The provenance table: probe name -> {column: value}."""
        if layout.PROVENANCE_PATH not in self.h5:
            return {}
        table = self.h5[layout.PROVENANCE_PATH]
        cols = {k: decode(table[k][:]) for k in table.keys() if k != 'id'}
        return {name: {k: v[i] for k, v in cols.items()} for i, name in enumerate(cols['probe_name'])}

    def containers(self) -> list[str]:
        """Names of the SpikeSortingContainers (one per probe exported with extensions)."""
        if layout.ECEPHYS_PATH not in self.h5:
            return []
        mod = self.h5[layout.ECEPHYS_PATH]
        return [k for k in mod.keys()
                if decode([mod[k].attrs.get('neurodata_type', b'')])[0] == 'SpikeSortingContainer']
