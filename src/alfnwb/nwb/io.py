"""Writing NWB files: to a temporary file beside the output, validated, then renamed.

A failed or interrupted export leaves nothing at the output path (the previous file, if any, stays
until the new one is complete and valid).
"""

from __future__ import annotations

import os
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
    from pynwb import NWBHDF5IO

    path = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.partial.nwb', dir=tmp_dir or path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        tmp.unlink()  # h5py creates the file itself
        with NWBHDF5IO(str(tmp), mode='w') as io:
            io.write(nwbfile)
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
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f'output {path}: write failed ({e.strerror or e})') from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
