"""Large datasets: chunked, compressed in parallel, written chunk by chunk.

HDF5 compresses the chunks of a dataset one after the other, on one core, with zlib: for the
per-spike data of a full probe that is most of an export's time. Here a large gzip dataset is
created empty by hdmf (:class:`ParallelGzipIO`), then filled by :func:`fill_parallel_gzip` after
hdmf wrote the file: its chunks are shuffled and deflated on threads by ISA-L (``isal``, about ten
times zlib's speed at a ratio within 2 %), and written with HDF5's direct chunk write. The result is
an ordinary gzip + shuffle dataset: any HDF5 reader decompresses it with its stock filters.

Data come as :class:`RowBlocks` (``read(start, stop)``): rows are produced a block at a time as
they are compressed, never all at once (spikes grouped by unit, IBL's waveform traces on disk).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..kernels import cores

__all__ = ['RowBlocks', 'ParallelGzipIO', 'dataio', 'gather', 'fill_parallel_gzip', 'deflate_chunk', 'default_jobs',
           'set_progress_hook', 'progress_tick', 'PARALLEL_MIN_BYTES', 'GZIP_LEVEL']

#: Datasets at least this large are compressed in parallel; smaller ones by HDF5 itself.
PARALLEL_MIN_BYTES = 1 << 22
#: The gzip level recorded in the filter (HDF5's default; what HDF5 would use to write more chunks).
GZIP_LEVEL = 4
#: ISA-L's level (0-3): 2 gives zlib level 4's ratio within 2 % at ten times its speed.
ISAL_LEVEL = 2

_hook: list[Callable[[], None] | None] = [None]


def set_progress_hook(hook: Callable[[], None] | None) -> None:
    """Called at each block written (the writer reports progress with it); None: nothing."""
    _hook[0] = hook


def progress_tick() -> None:
    """Tell the writer's watchdog the write goes on (a no-op without a hook)."""
    if _hook[0] is not None:
        _hook[0]()


def default_jobs() -> int:
    """Threads for compression: the cores this process may run on."""
    return cores()


class RowBlocks:
    """A dataset of ``n`` rows produced block by block (``read(start, stop)`` gives rows ``start:stop``).

    Writing spikes grouped by unit needs each array permuted, and IBL's waveform traces are
    gigabytes on disk: materialising either costs as much memory as the data.
    """

    def __init__(self, n: int, tail: tuple, dtype, read: Callable[[int, int], np.ndarray], block: int = 1 << 20):
        self.n, self.tail, self.dtype, self.read, self.block = int(n), tuple(tail), np.dtype(dtype), read, int(block)

    @classmethod
    def of(cls, array: np.ndarray) -> RowBlocks:
        """The rows of an array in memory."""
        return cls(array.shape[0], array.shape[1:], array.dtype, lambda a, b: array[a:b])

    @property
    def nbytes(self) -> int:
        return self.n * int(np.prod(self.tail, dtype=np.int64)) * self.dtype.itemsize

    def chunks(self) -> Iterator:
        from hdmf.data_utils import DataChunk

        for start in range(0, self.n, self.block):
            stop = min(start + self.block, self.n)
            progress_tick()
            # the full selection: hdmf sizes the dataset from the chunks' bounds on every axis
            yield DataChunk(data=self.read(start, stop),
                            selection=(slice(start, stop),) + tuple(slice(0, d) for d in self.tail))

    def dataio(self, compression: str | None, chunk: int = 1 << 18):
        """For hdmf: gzip in parallel (large datasets), else HDF5's own filter, or uncompressed (None)."""
        from hdmf.backends.hdf5.h5_utils import H5DataIO

        if self.n == 0:
            return self.read(0, 0)
        chunk_shape = (min(chunk, self.n),) + self.tail
        if compression == 'gzip' and self.nbytes >= PARALLEL_MIN_BYTES:
            return ParallelGzipIO(self, chunk_shape)
        iterator = _iterator_class()(self, chunk_shape)
        if compression is None:
            return H5DataIO(iterator, chunks=chunk_shape)
        return H5DataIO(iterator, compression=compression, shuffle=True, chunks=chunk_shape)


@functools.cache
def _iterator_class():
    from hdmf.data_utils import AbstractDataChunkIterator

    class Iterator_(AbstractDataChunkIterator):
        """hdmf's view of :class:`RowBlocks`."""

        def __init__(self, rows: RowBlocks, chunk_shape: tuple):
            self.rows, self.chunk_shape, self._gen = rows, chunk_shape, rows.chunks()

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._gen)

        def recommended_chunk_shape(self):
            return self.chunk_shape

        def recommended_data_shape(self):
            return (self.rows.n,) + self.rows.tail

        @property
        def dtype(self):
            return self.rows.dtype

        @property
        def maxshape(self):
            return (self.rows.n,) + self.rows.tail

    return Iterator_


@functools.cache
def _parallel_gzip_class():
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    class ParallelGzipIO_(H5DataIO):
        """An empty gzip + shuffle dataset for hdmf to create; :func:`fill_parallel_gzip` writes its chunks."""

        def __init__(self, rows: RowBlocks, chunk_shape: tuple):
            super().__init__(shape=(rows.n,) + rows.tail, dtype=rows.dtype, chunks=chunk_shape, compression='gzip',
                             compression_opts=GZIP_LEVEL, shuffle=True)
            self.rows, self.chunk_shape = rows, chunk_shape

    return ParallelGzipIO_


def ParallelGzipIO(rows: RowBlocks, chunk_shape: tuple):  # noqa: N802 - a class made on first use (hdmf is slow to import)
    """An ``H5DataIO`` of an empty gzip + shuffle dataset whose chunks :func:`fill_parallel_gzip` writes."""
    return _parallel_gzip_class()(rows, chunk_shape)


def dataio(data, compression: str | None, chunk: int | None = 1 << 18):
    """Wrap an array for HDF5 with chunking and compression (shuffle on), or return it as is.

    ``chunk`` is the number of rows per chunk (None: let h5py choose, for small n-d arrays).
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    data = np.asarray(data)
    if compression is None or data.size == 0:
        return data
    if chunk is None:
        return H5DataIO(data, compression=compression, shuffle=True, chunks=True)
    if compression == 'gzip' and data.nbytes >= PARALLEL_MIN_BYTES:
        return RowBlocks.of(data).dataio(compression, chunk)
    return H5DataIO(data, compression=compression, shuffle=True, chunks=(min(chunk, data.shape[0]),) + data.shape[1:])


def gather(pieces: list, compression: str | None, chunk: int = 1 << 18, dtype=None):
    """Data for a dataset holding ``concatenate([a[order] for a, order in pieces])``, gathered block by
    block as it is compressed; as ``dtype`` when given (arrays held narrower than their file dtype).

    A source whose ``grouped_by`` is its piece's order already holds its rows in that order
    (:class:`alfnwb.model.DiskColumn`, a row producer made of one): ``a.rows(start, stop)`` gives them.
    """
    # arrays, or row producers indexed like them (alfnwb.extensions.SpikeRows)
    pieces = [(a if hasattr(a, 'shape') and hasattr(a, 'dtype') else np.asarray(a), np.asarray(o)) for a, o in pieces]
    dtype = np.dtype(dtype) if dtype is not None else np.result_type(*[a.dtype for a, _ in pieces])
    offsets = np.cumsum([0] + [o.size for _, o in pieces])

    def read(start: int, stop: int) -> np.ndarray:
        out = [_rows(a, o, max(start, lo) - lo, min(stop, hi) - lo)
               for (a, o), lo, hi in zip(pieces, offsets[:-1], offsets[1:])
               if max(start, lo) < min(stop, hi)]  # the pieces this block overlaps
        return (np.concatenate(out) if len(out) > 1 else out[0]).astype(dtype, copy=False)

    if not offsets[-1]:
        return np.empty((0,) + pieces[0][0].shape[1:], dtype=dtype)
    if compression is None:
        return read(0, int(offsets[-1]))
    return RowBlocks(int(offsets[-1]), pieces[0][0].shape[1:], dtype, read).dataio(compression, chunk)


def _rows(source, order: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``source[order]``: read in place when the source is held in that order."""
    if getattr(source, 'grouped_by', None) is order:
        return source.rows(start, stop)
    return source[order[start:stop]]


def deflate_chunk(block: np.ndarray, chunk_rows: int) -> bytes:
    """One chunk as HDF5's shuffle then deflate filters store it (zlib stream), padded to the chunk size.

    HDF5 stores edge chunks whole: the rows past the end of the dataset are zeros (the fill value).

    >>> a = np.arange(5, dtype=np.int32)
    >>> raw = zlib.decompress(deflate_chunk(a, 8))
    >>> np.frombuffer(raw, np.uint8).reshape(4, 8).T.copy().view(np.int32).ravel().tolist()
    [0, 1, 2, 3, 4, 0, 0, 0]
    """
    block = np.ascontiguousarray(block)
    if block.shape[0] < chunk_rows:
        full = np.zeros((chunk_rows,) + block.shape[1:], dtype=block.dtype)
        full[:block.shape[0]] = block
        block = full
    size = block.dtype.itemsize
    raw = block.view(np.uint8).reshape(-1, size).T.tobytes() if size > 1 else block.tobytes()  # HDF5's shuffle
    try:
        from isal import isal_zlib
    except ImportError:  # zlib gives the same format, slower
        return zlib.compress(raw, GZIP_LEVEL)
    return isal_zlib.compress(raw, ISAL_LEVEL)


def fill_parallel_gzip(nwbfile, jobs: int | None = None) -> int:
    """Write the chunks of every :class:`ParallelGzipIO` dataset of a just-written, still open file.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        The file hdmf wrote (each dataset's ``H5DataIO.dataset`` is its open h5py dataset).
    jobs : int, optional
        Compression threads (default: :func:`default_jobs`).

    Returns
    -------
    int
        The number of datasets filled.
    """
    cls = _parallel_gzip_class()
    pending = [obj.data for obj in nwbfile.all_children() if isinstance(getattr(obj, 'data', None), cls)]
    jobs = jobs or default_jobs()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for io in pending:
            _fill(io, pool, jobs)
    return len(pending)


def _fill(io, pool: ThreadPoolExecutor, jobs: int) -> None:
    """Compress one dataset's chunks on ``pool`` (a bounded window in flight) and write them in order."""
    rows, dset, chunk_rows = io.rows, io.dataset, io.chunk_shape[0]
    zeros = (0,) * len(rows.tail)
    starts = range(0, rows.n, chunk_rows)

    def work(start: int) -> bytes:
        return deflate_chunk(rows.read(start, min(start + chunk_rows, rows.n)), chunk_rows)

    window: list = []
    for start in starts:
        window.append((start, pool.submit(work, start)))
        if len(window) >= 2 * jobs:
            _write_first(dset, window, zeros)
    while window:
        _write_first(dset, window, zeros)


def _write_first(dset, window: list, zeros: tuple) -> None:
    start, future = window.pop(0)
    dset.id.write_direct_chunk((start,) + zeros, future.result())
    progress_tick()
