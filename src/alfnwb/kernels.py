"""Vectorised kernels over spikes: grouping by unit, SpikeInterface's spike vector, correlograms.

Pure numpy (and one numba kernel): no SpikeInterface, no NWB. The NWB writers and the analyzer
builders share them, so that spikes are grouped the same way everywhere.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import AlfNwbError

__all__ = ['group_spikes', 'label_counts', 'stable_order', 'spike_vector', 'vector_order', 'in_vector_order', 'uniform_random_spikes',
           'isi_histograms', 'correlogram_bins', 'CorrelogramRows', 'correlograms', 'cores', 'cosine_similarity']

#: Spikes handled at once by the block-wise kernels: their temporaries stay a few tens of MB.
BLOCK = 1 << 20


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
        Permutation of the spikes (int32 below 2**31 spikes: half the memory of int64).
    ends : numpy.ndarray
        Cumulative spike count per cluster: cluster i owns ``order[ends[i-1]:ends[i]]``.
    """
    return stable_order(clusters, n_clusters), np.cumsum(label_counts(clusters, n_clusters))


def label_counts(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """``np.bincount(labels, minlength=n_labels)`` in blocks: bincount casts narrower labels to int64 first,
    a full-size copy (8 bytes a spike) for ALF's uint32 ``spikes.clusters``.

    >>> label_counts(np.array([2, 0, 2], dtype=np.uint32), 4).tolist()
    [1, 0, 2, 0]
    """
    counts = np.zeros(n_labels, dtype=np.int64)
    for a in range(0, labels.size, BLOCK):
        c = np.bincount(labels[a:a + BLOCK], minlength=n_labels)
        if c.size > counts.size:  # labels beyond n_labels: as bincount, a longer result
            counts = np.pad(counts, (0, c.size - counts.size))
        counts[:c.size] += c
    return counts


def stable_order(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """``np.argsort(labels, kind='stable')``, as a radix sort when the labels fit 8 or 16 bits.

    NumPy sorts 8- and 16-bit integers stably with a radix sort (linear time), wider ones with
    timsort: for a probe's cluster indices (< 65536) the cast halves the time of the sort. The
    permutation is int32 when it fits (it is held for the whole export: 4 bytes a spike, not 8),
    and is made a block of spikes at a time: no int64 permutation of all spikes on the way.

    >>> stable_order(np.array([2, 0, 2, 1]), 3).tolist()
    [1, 3, 0, 2]
    """
    labels = np.asarray(labels)
    if labels.size <= BLOCK:
        return _block_order(labels, n_labels).astype(np.int32 if labels.size < 1 << 31 else np.int64)
    counts = label_counts(labels, n_labels)
    free = np.cumsum(counts) - counts  # next position of each label in the result
    order = np.empty(labels.size, dtype=np.int32 if labels.size < 1 << 31 else np.int64)
    for a in range(0, labels.size, BLOCK):
        block = labels[a:a + BLOCK]
        o = _block_order(block, n_labels)
        c = np.bincount(block, minlength=n_labels)
        sorted_labels = block[o]
        # the k-th spike of the sorted block is the (k - first of its label)-th of its label in the block
        order[free[sorted_labels] + np.arange(o.size) - (np.cumsum(c) - c)[sorted_labels]] = o + a
        free += c
    return order


def _block_order(labels: np.ndarray, n_labels: int) -> np.ndarray:
    if n_labels <= 1 << 8:
        labels = labels.astype(np.uint8, copy=False)
    elif n_labels <= 1 << 16:
        labels = labels.astype(np.uint16, copy=False)
    return np.argsort(labels, kind='stable')


def spike_vector(samples: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SpikeInterface's spike vector (ordered by sample, then unit) and the permutation that made it.

    ``np.lexsort`` is stable, so spikes of one unit keep their input order.
    """
    order = np.lexsort((units, samples))
    return _vector(samples, units, order), order


def in_vector_order(samples: np.ndarray, units: np.ndarray) -> bool:
    """Whether spikes are already in spike-vector order: by sample, then by unit (checked in blocks).

    ALF spikes are in time order; when same-sample spikes are also in unit order (as alfnwb's
    synthetic data), the spike vector is the ALF order itself and no permutation is needed.

    >>> in_vector_order(np.array([0, 5, 5, 9]), np.array([3, 1, 2, 0])), in_vector_order(np.array([5, 5]), np.array([2, 1]))
    (True, False)
    """
    for a in range(0, max(samples.size - 1, 0), BLOCK):
        s = np.asarray(samples[a:a + BLOCK + 1], dtype=np.int64)
        ds = np.diff(s)
        if (ds < 0).any():
            return False
        ties = np.flatnonzero(ds == 0)
        if ties.size:
            u = np.asarray(units[a:a + BLOCK + 1], dtype=np.int64)
            if (u[ties + 1] < u[ties]).any():
                return False
    return True


def vector_order(samples: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The spike vector and the permutation from the input's order, None when there is none.

    As :func:`spike_vector`, without sorting (nor the 8-byte-a-spike permutation) when the input is
    already in spike-vector order (:func:`in_vector_order`).
    """
    if not in_vector_order(samples, units):
        return spike_vector(samples, units)
    return _vector(samples, units, None), None


def _vector(samples: np.ndarray, units: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    vector = np.zeros(samples.size, dtype=[('sample_index', 'int64'), ('unit_index', 'int64'),
                                           ('segment_index', 'int64')])
    for a in range(0, samples.size, BLOCK):  # in blocks: no per-spike temporaries beside the vector
        take = slice(a, a + BLOCK) if order is None else order[a:a + BLOCK]
        vector['sample_index'][a:a + BLOCK] = samples[take]
        vector['unit_index'][a:a + BLOCK] = units[take]
    return vector


def uniform_random_spikes(units: np.ndarray, n_units: int, max_per_unit: int, seed: int | None,
                          grouped: tuple | None = None) -> np.ndarray:
    """SpikeInterface's ``random_spikes_selection(method='uniform')``, without its numba kernels.

    The same draws in the same order (one ``Generator.choice`` per unit, on the unit's spike count:
    ``choice(array)`` draws exactly as ``choice(len(array))``), so the same spikes; the spikes are
    grouped by unit with a sort instead of SpikeInterface's kernel, which is compiled anew in every
    process (seconds). The loop is over units and touches only their counts, never the spikes.

    Parameters
    ----------
    units : numpy.ndarray
        ``unit_index`` of the spike vector (one segment).
    n_units : int
    max_per_unit : int
    seed : int or None
    grouped : tuple of numpy.ndarray, optional
        :func:`group_spikes` of ``units``, when the caller has it.

    Returns
    -------
    numpy.ndarray
        Ascending spike-vector indices (int64).

    >>> uniform_random_spikes(np.array([0, 1, 0, 0, 1]), 2, 2, seed=0).tolist()
    [1, 2, 3, 4]
    """
    order, ends = grouped if grouped is not None else group_spikes(units, n_units)
    counts = np.diff(np.r_[0, ends])
    starts = np.cumsum(counts) - counts
    rng = np.random.default_rng(seed=seed)
    picks = [start + rng.choice(count, size=min(max_per_unit, count), replace=False, shuffle=False)
             for start, count in zip(starts.tolist(), counts.tolist())]
    return np.sort(order[np.concatenate(picks)] if picks else np.zeros(0, np.int64)).astype(np.int64)


def isi_histograms(samples: np.ndarray, units: np.ndarray, n_units: int, fs: float, window_ms: float = 50.0,
                   bin_ms: float = 1.0, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SpikeInterface's ISI histograms (``compute_isi_histograms_numpy``), for all units at once.

    ``samples`` and ``units`` are in spike-vector order; ``order`` is :func:`stable_order` of the
    units when the caller has it.

    Returns
    -------
    counts : numpy.ndarray
        (units, bins) int64.
    bins : numpy.ndarray
        Bin edges in ms.

    >>> isi_histograms(np.array([0, 30, 90, 95]), np.array([0, 0, 0, 1]), 2, 30000.0, window_ms=3.0,
    ...                bin_ms=1.0)[0].tolist()
    [[0, 1, 1], [0, 0, 0]]
    """
    window = int(round(fs * window_ms * 1e-3))
    size = int(round(fs * bin_ms * 1e-3))
    window -= window % size
    bins = np.arange(0, window + size, size)
    n_bins = bins.size - 1
    order = stable_order(units, n_units) if order is None else order  # spikes of a unit keep their time order
    counts = np.zeros(n_units * n_bins, dtype=np.int64)
    for a in range(0, max(order.size - 1, 0), BLOCK):  # consecutive pairs of the grouped spikes, a block at a time
        o = order[a:a + BLOCK + 1]
        s, grouped = np.asarray(samples[o], dtype=np.int64), units[o]
        same = grouped[1:] == grouped[:-1]
        isi = (s[1:] - s[:-1])[same]
        unit = grouped[1:][same].astype(np.int64)
        # np.histogram's bins: [b_i, b_i+1), the last one closed
        keep = (isi >= 0) & (isi <= window)
        idx = np.minimum(isi[keep] // size, n_bins - 1)
        counts += np.bincount(unit[keep] * n_bins + idx, minlength=n_units * n_bins)
    return counts.reshape(n_units, n_bins), bins * 1e3 / fs


def correlogram_bins(fs: float, window_ms: float, bin_ms: float) -> tuple[np.ndarray, int, int]:
    """Bin edges (ms), half window and bin size (samples), exactly as SpikeInterface makes them."""
    window = int(round(fs * window_ms / 2 * 1e-3))
    size = int(round(fs * bin_ms * 1e-3))
    window -= window % size
    if window < size:
        raise AlfNwbError(f'correlogram window {window_ms} ms holds no bin of {bin_ms} ms')
    return np.arange(-window, window + size, size) * 1e3 / fs, window, size


_CCG_KERNEL = None


def _ccg_kernel():
    """A numba kernel filling the correlogram rows of a range of units (compiled on first use, cached on disk)."""
    global _CCG_KERNEL
    if _CCG_KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def kernel(ccg, samples, units, by_unit, starts, first, window, size, half):
            n = samples.size
            # row r is unit first + r: its spikes, in time order, each scanning its neighbours in time
            for r in range(ccg.shape[0]):
                ui = first + r
                for k in range(starts[ui], starts[ui + 1]):
                    i = by_unit[k]
                    ti = samples[i]
                    # later spikes j: lag t_i - t_j = -d, kept up to -W (SpikeInterface keeps -W <= lag < W)
                    for j in range(i + 1, n):
                        d = samples[j] - ti  # >= 0: spikes are sorted by sample
                        if d > window:
                            break
                        ccg[r, units[j], half + (-d) // size] += 1
                    # earlier spikes j: lag d >= 0, kept below W. Every pair is seen from both of its spikes,
                    # each writing its own unit's row: rows are independent, one block of them at a time
                    for j in range(i - 1, -1, -1):
                        d = ti - samples[j]
                        if d >= window:
                            break
                        ccg[r, units[j], half + d // size] += 1

        _CCG_KERNEL = kernel
    return _CCG_KERNEL


def cores() -> int:
    """The cores this process may run on (threads for the kernels and for compression)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


class CorrelogramRows:
    """All auto- and cross-correlograms, equal to SpikeInterface's ``compute_correlograms``, made a
    block of rows (units) at a time.

    SpikeInterface's kernel visits every ordered pair of spikes in time order, each count a random
    access into a (units x units x bins) array far larger than the CPU caches. This one visits the
    spikes unit by unit, so that all counts of a unit land in its own row: rows are independent, and
    a block of them is made on demand (:meth:`read`). A file writer compresses blocks of rows on
    several threads as they are made, and the whole array (0.2 GB at 1000 units, 0.8 GB at 2000)
    never exists; :meth:`all` makes it at once, on threads. Beside the counts it holds the spikes'
    by-unit order; samples and units are used in place when contiguous (int64 or int32; (u)int32 or uint16).

    Parameters
    ----------
    samples, units : numpy.ndarray
        Sample and unit index of each spike, in spike-vector order (sorted by sample).
    n_units : int
    fs : float
        Sampling frequency, Hz.
    window_ms, bin_ms : float
        Full window and bin width, as SpikeInterface's parameters.
    by_unit : tuple of numpy.ndarray, optional
        :func:`group_spikes` of ``units``, when the caller has it already.
    max_numpy_pairs : int
        Up to this many spikes and spike pairs within the window, vectorised numpy (no numba kernel to
        load or dispatch); beyond, the numba kernel. Both give the same counts.

    Attributes
    ----------
    shape : tuple
        (n_units, n_units, n_bins); ``ccgs[a, b, k]`` counts pairs whose lag ``t_a - t_b`` falls in bin k.
    dtype : numpy.dtype
        int32: a count is at most (spikes of a unit) x (samples per bin), far below 2**31.
    bins : numpy.ndarray
        Bin edges, ms.
    """

    def __init__(self, samples: np.ndarray, units: np.ndarray, n_units: int, fs: float, window_ms: float = 50.0,
                 bin_ms: float = 1.0, by_unit: tuple | None = None, max_numpy_pairs: int = 2_000_000):
        self.bins, self.window, self.size = correlogram_bins(fs, window_ms, bin_ms)
        self.half = (self.bins.size - 1) // 2
        self.shape, self.dtype = (n_units, n_units, self.bins.size - 1), np.dtype(np.int32)
        self._small = None
        samples, units = np.asarray(samples), np.asarray(units)
        # a small probe's pairs within the window fit in memory, and numpy skips loading the numba kernel from
        # its cache; counting the pairs costs two per-spike arrays, so a probe with more spikes goes to numba
        if samples.size <= max_numpy_pairs:
            ends = np.searchsorted(samples, samples.astype(np.int64) + self.window, side='right')
            if int((ends - np.arange(samples.size) - 1).sum()) <= max_numpy_pairs:
                self._small = _correlograms_numpy(samples, units, ends, n_units, self.shape[2], self.window,
                                                  self.size, self.half)
                return
        self.samples = _contiguous(samples, (np.int64, np.int32), np.int64)
        self.units = _contiguous(units, (np.int32, np.uint32, np.uint16), np.int32)
        order, ends = by_unit if by_unit is not None else group_spikes(self.units, n_units)
        self.by_unit = order
        self.starts = np.r_[0, ends].astype(np.int64)

    def read(self, first: int, stop: int) -> np.ndarray:
        """The correlograms of units ``first`` to ``stop - 1`` against every unit: (rows, n_units, n_bins)."""
        stop = min(stop, self.shape[0])
        if self._small is not None:
            return self._small[first:stop]
        out = np.zeros((max(stop - first, 0),) + self.shape[1:], dtype=self.dtype)
        if out.size and self.samples.size:
            _ccg_kernel()(out, self.samples, self.units, self.by_unit, self.starts, first, self.window, self.size,
                          self.half)
        return out

    def all(self, jobs: int | None = None) -> np.ndarray:
        """Every row at once; blocks of about equal spike counts on ``jobs`` threads (default: the cores)."""
        if self._small is not None:
            return self._small
        from concurrent.futures import ThreadPoolExecutor

        jobs = jobs or cores()
        n = self.shape[0]
        out = np.zeros(self.shape, dtype=self.dtype)
        # 4 blocks a thread, cut where the spike count (the work) reaches each quarter's share
        cuts = np.searchsorted(self.starts[1:], np.linspace(0, self.starts[-1], 4 * jobs + 1)[1:-1], side='right')
        edges = np.unique(np.r_[0, cuts, n])

        def fill(a: int, b: int) -> None:
            if self.samples.size:
                _ccg_kernel()(out[a:b], self.samples, self.units, self.by_unit, self.starts, a, self.window,
                              self.size, self.half)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(fill, edges[:-1], edges[1:]))
        return out


def _contiguous(a: np.ndarray, keep: tuple, dtype) -> np.ndarray:
    """``a`` itself when contiguous and of a type in ``keep``, else a contiguous copy as ``dtype``."""
    if a.flags.c_contiguous and a.dtype in [np.dtype(k) for k in keep]:
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def correlograms(samples: np.ndarray, units: np.ndarray, n_units: int, fs: float, window_ms: float = 50.0,
                 bin_ms: float = 1.0, max_numpy_pairs: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """All auto- and cross-correlograms at once (:class:`CorrelogramRows`), equal to SpikeInterface's.

    Returns
    -------
    ccgs : numpy.ndarray
        (n_units, n_units, n_bins) int32; ``ccgs[a, b, k]`` counts pairs whose lag ``t_a - t_b``
        falls in bin k.
    bins : numpy.ndarray
        Bin edges, ms.

    >>> ccg, bins = correlograms(np.array([0, 30, 60]), np.array([0, 1, 0]), 2, 30000.0, window_ms=4.0)
    >>> ccg[0, 1].tolist(), ccg[1, 0].tolist()
    ([0, 1, 0, 1], [0, 1, 0, 1])
    """
    rows = CorrelogramRows(samples, units, n_units, fs, window_ms, bin_ms, max_numpy_pairs=max_numpy_pairs)
    return rows.all(), rows.bins


def _correlograms_numpy(samples: np.ndarray, units: np.ndarray, ends: np.ndarray, n_units: int, n_bins: int,
                        window: int, size: int, half: int) -> np.ndarray:
    """The numba kernel's counts with numpy: every pair (i < j) within the window at once.

    ``ends[i]``: one past the last spike within ``window`` samples after spike i.
    """
    n = samples.size
    per = ends - np.arange(n) - 1  # later spikes within the window, per spike
    first = np.repeat(np.arange(n), per)
    second = first + 1 + np.arange(first.size) - np.repeat(np.cumsum(per) - per, per)
    d = samples[second] - samples[first]
    ui, uj = units[first].astype(np.int64), units[second].astype(np.int64)
    # pair (i, j): lag -d in row ui; pair (j, i): lag d in row uj (SpikeInterface keeps -W <= lag < W)
    flat = np.concatenate([(ui * n_units + uj) * n_bins + half + (-d) // size,
                           ((uj * n_units + ui) * n_bins + half + d // size)[d < window]])
    counts = np.bincount(flat, minlength=n_units * n_units * n_bins)
    return counts.reshape(n_units, n_units, n_bins).astype(np.int32)


def cosine_similarity(dense: np.ndarray) -> np.ndarray:
    """Template similarity as SpikeInterface's ``cosine`` with ``support='union'`` and no lag.

    On the union of two units' sparse channels, the templates (zero off their own channels) give
    the same dot product and norms as on all channels, so one matrix product does it; SpikeInterface's
    numba kernel gives the same numbers but costs ~10 s of compilation in every new process.
    Products are taken in float64 blocks of units: no float64 copy of all templates.

    >>> t = np.array([[[1.0, 0.0]], [[1.0, 1.0]]], dtype=np.float32)
    >>> np.round(cosine_similarity(t).astype(float), 3).tolist()
    [[1.0, 0.707], [0.707, 1.0]]
    """
    flat = dense.reshape(dense.shape[0], -1)
    # blocks of about 16 MB in float64 (a full probe's templates are ~30 k values a unit)
    n, step = flat.shape[0], max(1, min(256, (1 << 24) // max(flat.shape[1] * 8, 1)))

    def unit_block(a: int) -> np.ndarray:
        block = flat[a:a + step].astype(np.float64)
        norm = np.linalg.norm(block, axis=1)
        return block / np.where(norm > 0, norm, 1)[:, None]

    out = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, step):
        left = unit_block(a)
        for b in range(a, n, step):
            right = left if b == a else unit_block(b)
            out[a:a + step, b:b + step] = left @ right.T
            out[b:b + step, a:a + step] = out[a:a + step, b:b + step].T
    return out
