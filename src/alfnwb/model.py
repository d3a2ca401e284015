"""The data model: what loading produces and what the NWB builders and readers take.

Plain dataclasses of numpy arrays and a provenance record, with no knowledge of ONE or NWB, so that
every builder and reader imports this module and none imports :mod:`alfnwb.loading`. Each class
owns its round trip to and from plain dicts (``to_dict``/``from_dict``), as probeinterface's
``Probe`` does.

>>> p = Provenance(pid='p', eid='e', probe='probe00', spike_sorter='iblsorter',
...                collection='alf/probe00/iblsorter', revision='', histology='alf')
>>> Provenance.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

import datetime
import os
import tempfile
import threading
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataWarning

__all__ = ['HISTOLOGY_LEVELS', 'SAMPLING_FREQUENCY', 'KILOSORT25', 'UNREVISIONED', 'Provenance', 'ProbeData', 'SessionData',
           'DiskColumn']

#: Name users give the old layout (``alf/probeXX`` without a sorter folder).
KILOSORT25 = 'kilosort2.5'
#: Revision keyword for the original, unrevisioned datasets of a collection.
UNREVISIONED = 'unrevisioned'
#: Histology levels, best first.
HISTOLOGY_LEVELS = ('alf', 'resolved', 'aligned', 'traced', 'none')
#: Nominal sampling rate (Hz) of the Neuropixels AP band: the sample clock of ``spikes.samples`` when
#: no raw file says better, the rate of ``waveform_mean`` and the resolution of ``spike_times``.
SAMPLING_FREQUENCY = 30000.0


@dataclass
class Provenance:
    """Where a probe's data came from: recorded in the NWB file and in batch manifests."""

    pid: str
    eid: str
    probe: str
    spike_sorter: str  # 'iblsorter', 'pykilosort' or 'kilosort2.5'
    collection: str
    revision: str  # '' for unrevisioned datasets
    histology: str  # one of HISTOLOGY_LEVELS
    model: str = ''
    alfnwb_version: str = ''
    ibllib_version: str = ''
    one_version: str = ''
    waveforms: str = ''  # IBL's extracted waveforms used: '' none, 'waveforms.* v1 (per cluster)' or '... v2 (flat)'
    warnings: str = ''  # every degradation of this probe's export, one per line
    trials_collection: str = ''  # ALF collection of the session's trials ('' : no trials exported)
    trials_revision: str = ''  # revision of the trials files loaded ('' : unrevisioned)

    def to_dict(self) -> dict:
        """The record as a dict of str (the provenance table's row)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Provenance:
        """The inverse of :meth:`to_dict`; unknown keys (e.g. ``num_samples``) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in d.items() if k in names})


_SEEK_LOCK = threading.Lock()


class DiskColumn:
    """A per-spike column held in a file, its rows grouped by cluster (the order of :meth:`ProbeData.by_cluster`).

    The writers read such a column in that order only, a block of rows at a time: :meth:`rows` reads
    them from the file (``grouped_by`` is the permutation, shared with the probe). The whole column in
    ALF order (``numpy.asarray``) or any rows of it (``column[index]``) cost a read of the file each time.

    The file is anonymous (``tempfile.TemporaryFile``: no name on Linux, so nothing can be left
    behind, even by a killed process); it lives as long as the column, and a forked process reads it too.

    >>> times, order = np.array([0.5, 0.7, 0.9, 1.2]), np.array([1, 3, 0, 2], dtype=np.int32)
    >>> col = DiskColumn.write(times, order, folder=None)
    >>> col.rows(1, 3).tolist(), col[[2, 0]].tolist(), np.array_equal(np.asarray(col), times)
    ([1.2, 0.5], [0.9, 0.5], True)
    """

    #: Rows a block (8 MB of float64): what writing and reading back whole go by.
    BLOCK = 1 << 20

    def __init__(self, file, dtype, n: int, grouped_by: np.ndarray):
        self.file, self.dtype, self.shape, self.grouped_by = file, np.dtype(dtype), (int(n),), grouped_by
        self.ndim, self.size, self.nbytes = 1, int(n), int(n) * self.dtype.itemsize

    @classmethod
    def write(cls, array: np.ndarray, order: np.ndarray, folder: str | Path | None) -> DiskColumn:
        """``array[order]`` written a block at a time (no full-size copy in memory) to a temporary file
        in ``folder`` (None: the system's temporary folder)."""
        f = tempfile.TemporaryFile(dir=folder)
        try:
            for a in range(0, order.size, cls.BLOCK):
                array[order[a:a + cls.BLOCK]].tofile(f)
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(f, array.dtype, array.shape[0], order)

    def __len__(self) -> int:
        return self.size

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in the grouped order, read from the file (thread-safe: no shared offset)."""
        start, stop = max(0, start), min(stop, self.size)
        out = np.empty(max(stop - start, 0), dtype=self.dtype)
        view, offset = memoryview(out).cast('B'), start * self.dtype.itemsize
        while view.nbytes:
            got = self._read_at(view, offset)
            if got <= 0:
                raise OSError(f'spike column file: {view.nbytes} bytes short at offset {offset}')
            view, offset = view[got:], offset + got
        return out

    def _read_at(self, view: memoryview, offset: int) -> int:
        if hasattr(os, 'preadv'):  # POSIX: no file position shared between the compression threads
            return os.preadv(self.file.fileno(), [view], offset)
        with _SEEK_LOCK:  # Windows
            self.file.seek(offset)
            return self.file.readinto(view)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for a in range(0, self.size, self.BLOCK):
            out[self.grouped_by[a:a + self.BLOCK]] = self.rows(a, a + self.BLOCK)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self)[index]


def _arrays_to_dict(obj: dict) -> dict:
    """A copy of an ALF object dict: arrays as they are, DataFrames kept (metrics)."""
    return {k: (np.asarray(v) if isinstance(v, (list, tuple)) else v) for k, v in obj.items()}


@dataclass
class ProbeData:
    """One probe's spike sorting, shaped like ``SpikeSortingLoader.load_spike_sorting`` output.

    ``spikes``: times (s), clusters, amps (V), depths (um), samples when present.
    ``clusters``: channels, depths, uuids (str array), metrics (DataFrame), waveforms (V),
    waveformsChannels, amps when present.
    ``channels``: axial_um, lateral_um, rawInd, shank; with histology also x, y, z (m from bregma,
    IBL axes), atlas_id and acronym.
    ``waveforms``: IBL's extracted waveforms when the sorting has them (else None), as
    ``SpikeSortingLoader.raw_waveforms()`` loads them: ``traces`` (V; (waveforms, channels, samples),
    or (clusters, waveforms, channels, samples) in the per-cluster layout), ``templates`` (their
    median per cluster), ``table`` (DataFrame: cluster, sample, peak_channel, waveform_index, ...),
    ``channels`` (raw channel of each trace row; the probe's channel count pads the neighbourhoods),
    ``version`` (1: per cluster, 2: flat).
    """

    provenance: Provenance
    spikes: dict
    clusters: dict
    channels: dict
    waveforms: dict | None = None
    _by_cluster: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _alf_dtypes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def narrow_spikes(self) -> list[str]:
        """Hold ``spikes.samples`` as int32 and ``spikes.clusters`` as uint16 when every value fits.

        The same numbers in 4 bytes a spike, not 8 (samples), and 2, not 4 (clusters): an export holds
        both from its load to the end of its write (the correlograms read them there), 105 MB less at
        17.5 M spikes, 360 MB at 60 M. :meth:`alf_dtype` keeps the ALF dtype, which :meth:`to_dict` and
        the writers give back.

        Returns
        -------
        list of str
            The spike arrays held narrower than in ALF.

        >>> p = ProbeData(Provenance('p', 'e', 'probe00', 'iblsorter', 'alf/probe00/iblsorter', '', 'alf'),
        ...               spikes={'samples': np.array([0, 7, 2 ** 31 - 1]), 'clusters': np.array([1, 0, 2], np.uint32)},
        ...               clusters={}, channels={})
        >>> p.narrow_spikes(), p.spikes['samples'].dtype.name, p.alf_dtype('samples').name
        (['samples', 'clusters'], 'int32', 'int64')
        >>> p.to_dict()['spikes']['clusters'].dtype.name
        'uint32'
        >>> p.spikes['samples'] = np.array([0, 2 ** 31])  # past int32 (19.9 h at 30 kHz): held as loaded
        >>> p.narrow_spikes(), p.spikes['samples'].dtype.name
        (['clusters'], 'int64')
        """
        for key, narrow in (('samples', np.int32), ('clusters', np.uint16)):
            if key not in self.spikes:
                continue
            a = np.asarray(self.spikes[key])
            wider = a.dtype.kind in 'iu' and a.dtype.itemsize > np.dtype(narrow).itemsize
            if wider and not (a.size and (a.min() < 0 or a.max() > np.iinfo(narrow).max)):
                self._alf_dtypes.setdefault(key, a.dtype)
                self.spikes[key] = a.astype(narrow)
        return [k for k in ('samples', 'clusters') if k in self.spikes and self.alf_dtype(k) != self.spikes[k].dtype]

    def alf_dtype(self, key: str) -> np.dtype:
        """The dtype ``spikes.<key>`` has in ALF (the array's own unless :meth:`narrow_spikes` narrowed it)."""
        held = self.spikes[key]
        return np.dtype(self._alf_dtypes.get(key, held.dtype if hasattr(held, 'dtype') else np.asarray(held).dtype))

    def hold_on_disk(self, key: str, folder: str | Path | None = None) -> bool:
        """Move a spike column the writers read grouped by cluster only into a file: :class:`DiskColumn`.

        ``spikes.times``, ``amps`` and ``depths`` are 20 bytes a spike that an export holds from its
        load to the end of its write only to write them by unit. The column goes to an anonymous file
        in ``folder``, in the order of :meth:`by_cluster`; ``numpy.asarray`` reads it back whole.

        Returns
        -------
        bool
            Whether it moved (False: absent, or not a 1-d array in memory).
        """
        a = self.spikes.get(key)
        if not (isinstance(a, np.ndarray) and a.ndim == 1):
            return False
        self.spikes[key] = DiskColumn.write(a, self.by_cluster()[0], folder)
        return True

    def by_cluster(self) -> tuple[np.ndarray, np.ndarray]:
        """Spikes grouped by cluster, time order kept (:func:`alfnwb.kernels.group_spikes`), made once.

        The units table and the analyzer share it: 4 bytes a spike held once, not once per user.
        """
        if self._by_cluster is None:
            from .kernels import group_spikes

            self._by_cluster = group_spikes(np.asarray(self.spikes['clusters']), self.n_clusters)
        return self._by_cluster

    @property
    def n_clusters(self) -> int:
        return int(self.clusters['channels'].size)

    @property
    def n_channels(self) -> int:
        return int(self.channels['rawInd'].size)

    def cluster_metrics(self):
        """IBL's ``clusters.metrics`` with one row per cluster id (0..n-1, reindexed when the table skips
        clusters: their values are NaN), without the ``cluster_id`` column; empty when absent."""
        import pandas as pd

        n = self.n_clusters
        m = self.clusters.get('metrics')
        if m is None:
            return pd.DataFrame(index=np.arange(n))
        m = m.reset_index(drop=True)
        if 'cluster_id' in m:
            ids = np.asarray(m['cluster_id'])
            if not np.array_equal(ids, np.arange(n)):
                warnings.warn(DataWarning(
                    f'insertion {self.provenance.pid}: clusters.metrics has {len(m)} rows for {n} clusters: '
                    f'reindexed by cluster_id, {int(np.isin(np.arange(n), ids, invert=True).sum())} clusters '
                    'without metrics (NaN)'), stacklevel=2)
            m = m.set_index('cluster_id').reindex(np.arange(n))
        m.index = np.arange(n)
        return m

    def to_dict(self) -> dict:
        """``{'provenance': dict, 'spikes': dict, 'clusters': dict, 'channels': dict}``."""
        spikes = {k: (np.asarray(v).astype(self._alf_dtypes[k]) if k in self._alf_dtypes else
                      np.asarray(v) if isinstance(v, DiskColumn) else v) for k, v in self.spikes.items()}
        return {'provenance': self.provenance.to_dict(), 'spikes': _arrays_to_dict(spikes),
                'clusters': _arrays_to_dict(self.clusters), 'channels': _arrays_to_dict(self.channels),
                'waveforms': None if self.waveforms is None else dict(self.waveforms)}

    @classmethod
    def from_dict(cls, d: dict) -> ProbeData:
        """The inverse of :meth:`to_dict`."""
        return cls(provenance=Provenance.from_dict(d['provenance']), spikes=_arrays_to_dict(d['spikes']),
                   clusters=_arrays_to_dict(d['clusters']), channels=_arrays_to_dict(d['channels']),
                   waveforms=None if d.get('waveforms') is None else dict(d['waveforms']))


@dataclass
class SessionData:
    """A session's metadata and the probes to export."""

    eid: str
    lab: str
    subject: str
    date: datetime.date | None
    number: int | None
    task_protocol: str = ''
    projects: str = ''
    start_time: datetime.datetime | None = None
    probes: list = field(default_factory=list)
    #: IBL trials as brainbox's ``SessionLoader.load_trials()`` returns them (a DataFrame), None without.
    trials: Any = None
    trials_collection: str = ''
    trials_revision: str = ''

    def to_dict(self) -> dict:
        """Plain values: dates as ISO strings, probes as :meth:`ProbeData.to_dict` dicts, trials as a dict
        of column arrays."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ('probes', 'trials')}
        for key in ('date', 'start_time'):
            d[key] = d[key].isoformat() if d[key] is not None else None
        d['probes'] = [p.to_dict() for p in self.probes]
        d['trials'] = None if self.trials is None else {k: self.trials[k].to_numpy() for k in self.trials.columns}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SessionData:
        """The inverse of :meth:`to_dict`."""
        d = dict(d)
        if isinstance(d.get('date'), str):
            d['date'] = datetime.date.fromisoformat(d['date'])
        if isinstance(d.get('start_time'), str):
            d['start_time'] = datetime.datetime.fromisoformat(d['start_time'])
        d['probes'] = [ProbeData.from_dict(p) for p in d.get('probes', [])]
        if isinstance(d.get('trials'), dict):
            import pandas as pd

            d['trials'] = pd.DataFrame(d['trials'])
        return cls(**d)
