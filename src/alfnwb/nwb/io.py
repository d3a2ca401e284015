"""Writing NWB files: to a temporary file beside the output, validated, then renamed.

A failed or interrupted export leaves nothing at the output path (the previous file, if any, stays
until the new one is complete and valid).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from ..errors import AlfNwbError, OutputError


def dataio(data, compression: str | None, chunk: int | None = 1 << 18):
    """Wrap an array for HDF5 with chunking and compression (shuffle on), or return it as is.

    ``chunk`` is the number of rows per chunk (None: let h5py choose for n-d arrays).
    """
    import numpy as np
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    data = np.asarray(data)
    if compression is None or data.size == 0:
        return data
    if chunk is None:
        chunks = True
    else:
        chunks = (min(chunk, data.shape[0]),) + data.shape[1:]
    return H5DataIO(data, compression=compression, shuffle=True, chunks=chunks)


class GatherIterator:
    """The data ``concatenate([a[order] for a, order in pieces])``, produced block by block as HDF5 writes it.

    Writing spikes grouped by unit needs each array permuted; materialising the permuted copies
    costs as much memory as the spikes themselves. This iterator gathers one block at a time.
    """

    def __init__(self, pieces: list, block: int = 1 << 20):
        import numpy as np

        self.pieces = [(np.asarray(a), np.asarray(o)) for a, o in pieces]
        self.block = int(block)
        self._n = sum(o.size for _, o in self.pieces)
        first = self.pieces[0][0]
        self._dtype = first.dtype
        self._tail = first.shape[1:]

    def chunks(self):
        from hdmf.data_utils import DataChunk

        start = 0
        for a, order in self.pieces:
            for i in range(0, order.size, self.block):
                idx = order[i:i + self.block]
                yield DataChunk(data=a[idx], selection=(slice(start + i, start + i + idx.size),))
            start += order.size


def gather(pieces: list, compression: str | None, chunk: int = 1 << 18):
    """Data for a dataset holding ``concatenate([a[order] ...])``: lazily gathered when compressed."""
    import numpy as np
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from hdmf.data_utils import AbstractDataChunkIterator

    it = GatherIterator(pieces)
    if compression is None or it._n == 0:
        return np.concatenate([a[o] for a, o in it.pieces]) if len(it.pieces) > 1 else it.pieces[0][0][it.pieces[0][1]]

    class _Iter(AbstractDataChunkIterator):
        def __init__(self):
            self._gen = it.chunks()

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._gen)

        def recommended_chunk_shape(self):
            return (min(chunk, it._n),) + it._tail

        def recommended_data_shape(self):
            return (it._n,) + it._tail

        @property
        def dtype(self):
            return it._dtype

        @property
        def maxshape(self):
            return (it._n,) + it._tail

    return H5DataIO(_Iter(), compression=compression, shuffle=True, chunks=(min(chunk, it._n),) + it._tail)


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before loading anything, if the output cannot be written."""
    path = Path(path)
    if path.suffix != '.nwb':
        raise OutputError(f'output {path}: the file name must end in .nwb')
    if path.exists() and not overwrite:
        raise OutputError(f'output {path}: exists (use --overwrite / overwrite=True to replace it)')
    folder = path.parent if str(path.parent) else Path('.')
    if not folder.is_dir():
        raise OutputError(f'output {path}: folder {folder} does not exist')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f'output {path}: folder {folder} is not writable')
    return path


def validate(path: str | Path) -> list[str]:
    """pynwb schema validation; returns the messages (empty when valid)."""
    from pynwb import validate as pynwb_validate

    result = pynwb_validate(path=str(path), use_cached_namespaces=True)
    errors = result[0] if isinstance(result, tuple) else result
    return [str(e) for e in errors]


@contextlib.contextmanager
def output_lock(path: str | Path, tmp_dir: str | Path | None = None):
    """Hold an exclusive lock on an output path for the whole export (load, build, write).

    A second process exporting to the same path fails at once with a clear message instead of
    interleaving its file with the first one's. The lock is an ``flock`` on a hidden file beside
    the temporary files: the kernel releases it when the process dies (``kill -9`` included).
    Partial files a killed process left for this output are removed once the lock is held.
    """
    import fcntl

    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir else (path.parent if str(path.parent) else Path('.'))
    lock_path = folder / f'.{path.name}.lock'
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f'output {path}: cannot create a lock in {folder} ({e.strerror or e})') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode(errors='replace').strip() or '?'
            finally:
                os.close(fd)
            raise OutputError(f'output {path}: another alfnwb process (pid {holder}) is writing it; '
                              'wait for it to finish') from None
        # the file may have been unlinked by its previous holder between our open and flock
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        pattern = re.compile(rf'^\.{re.escape(path.stem)}\.[A-Za-z0-9_]{{8}}\.partial\.nwb$')
        for stale in folder.glob(f'.{path.stem}.*.partial.nwb'):
            if pattern.match(stale.name):
                stale.unlink(missing_ok=True)
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


class _WriteFailed(Exception):
    """The HDF5 writer (child process) failed; the message says why."""


def _write_hdf5(nwbfile, tmp: Path) -> None:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(tmp), mode='w') as io:
        io.write(nwbfile)


def _write_isolated(nwbfile, tmp: Path) -> None:
    """Write the HDF5 file in a forked child process.

    When the disk fills up (or a file size limit is hit), HDF5 keeps the half-written file open and
    its final flush at exit crashes the process that wrote it. The child takes that crash; the
    parent reports the failure and removes the file. The fork shares the data copy-on-write: no
    copy of the spikes is made.
    """
    if not hasattr(os, 'fork'):
        return _write_hdf5(nwbfile, tmp)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write, report, and leave without running any exit handler
        code = 0
        try:
            os.close(read_end)
            # h5py's complaints about a failed file would clutter the terminal: the reason goes up the pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            _write_hdf5(nwbfile, tmp)
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            code = 1
            reason = _write_failure(e) or f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
            try:
                os.write(write_end, reason.encode()[:2000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while True:
        data = os.read(read_end, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    message = b''.join(chunks).decode(errors='replace').strip()
    if os.WIFSIGNALED(status):
        raise _WriteFailed(message or f'the HDF5 writer died (signal {os.WTERMSIG(status)})')
    if os.WEXITSTATUS(status) != 0:
        raise _WriteFailed(message or 'the HDF5 writer failed')


def _write_failure(exc: BaseException) -> str | None:
    """One line saying why a write failed on the storage side, or None for other errors."""
    text = str(exc)
    codes = {errno.ENOSPC: 'no space left on device', errno.EFBIG: 'file too large (file size limit)',
             errno.EDQUOT: 'disk quota exceeded', errno.EROFS: 'read-only file system', errno.EIO: 'I/O error',
             errno.EACCES: 'permission denied'}
    code = getattr(exc, 'errno', None)
    if code in codes:
        return codes[code]
    match = re.search(r'errno = (\d+)', text)
    if match and int(match.group(1)) in codes:
        return codes[int(match.group(1))]
    if isinstance(exc, OSError):
        return (exc.strerror or text).splitlines()[0][:200]
    return None


def write_nwbfile(nwbfile, path: str | Path, overwrite: bool = False, validate_file: bool = True,
                  tmp_dir: str | Path | None = None) -> Path:
    """Write atomically: temporary file in the same folder, schema validation, rename.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
    path : str or pathlib.Path
        Output ``.nwb`` path.
    overwrite : bool
        Replace an existing file.
    validate_file : bool
        Run pynwb's schema validation before the rename.
    tmp_dir : str or pathlib.Path, optional
        Folder of the temporary file (default: the output's folder). It must be on the same file
        system for the rename to be atomic; a batch keeps its partial files out of the dandiset.

    Returns
    -------
    pathlib.Path
        The output path.
    """
    path = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.partial.nwb', dir=tmp_dir or path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        tmp.unlink()  # h5py creates the file itself
        _write_isolated(nwbfile, tmp)
        if validate_file:
            errors = validate(tmp)
            if errors:
                raise OutputError(f'output {path}: NWB schema validation failed: {errors[0]}')
        if path.exists() and not overwrite:
            raise OutputError(f'output {path}: appeared while writing (use --overwrite)')
        os.replace(tmp, path)
    except AlfNwbError:
        tmp.unlink(missing_ok=True)
        raise
    except _WriteFailed as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f'output {path}: write failed: {e}') from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f'output {path}: write failed: {_write_failure(e)}') from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
