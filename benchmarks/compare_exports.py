"""Compare two NWB files dataset by dataset and attribute by attribute.

Used to show that a refactor changed no byte of what a file holds: everything must be equal except
``file_create_date`` and the ``object_id`` attributes (new at every write).

    python benchmarks/compare_exports.py before.nwb after.nwb

Exit code 0 when the files are equal, 1 with a list of differences otherwise.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

#: Differences that are expected between two writes of the same content.
IGNORED_PATHS = {'/file_create_date'}
IGNORED_ATTRS = {'object_id'}


def _items(f: h5py.File) -> dict[str, h5py.Group | h5py.Dataset]:
    out = {'/': f}
    f.visititems(lambda name, obj: out.setdefault('/' + name, obj))
    return out


def _equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == 'f':
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind == 'O':
        return all(x == y for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
    if a.dtype.kind == 'V':  # references: compare the objects they point at by name
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def _deref(f: h5py.File, value):
    """HDF5 object references become the path they point at (addresses differ between files)."""
    if isinstance(value, h5py.Reference):
        return f[value].name if value else None
    if isinstance(value, np.ndarray) and value.dtype == h5py.ref_dtype:
        return np.array([f[r].name if r else '' for r in value.ravel()], dtype=object).reshape(value.shape)
    if isinstance(value, np.ndarray) and value.dtype.names and any(
            value.dtype[n] == h5py.ref_dtype for n in value.dtype.names):
        return [tuple(f[v].name if isinstance(v, h5py.Reference) else v for v in row) for row in value.tolist()]
    return value


def compare(path_a: str, path_b: str) -> list[str]:
    """Differences between two HDF5 files (empty when equal but for the ignored paths and attributes)."""
    diffs = []
    with h5py.File(path_a, 'r') as fa, h5py.File(path_b, 'r') as fb:
        ia, ib = _items(fa), _items(fb)
        for name in sorted(set(ia) ^ set(ib)):
            diffs.append(f'{name}: only in {"the first" if name in ia else "the second"} file')
        for name in sorted(set(ia) & set(ib)):
            if name in IGNORED_PATHS:
                continue
            a, b = ia[name], ib[name]
            for key in sorted((set(a.attrs) | set(b.attrs)) - IGNORED_ATTRS):
                if key not in a.attrs or key not in b.attrs:
                    diffs.append(f'{name}: attribute {key} in one file only')
                elif not _equal(_deref(fa, a.attrs[key]), _deref(fb, b.attrs[key])):
                    diffs.append(f'{name}: attribute {key} differs')
            if isinstance(a, h5py.Dataset):
                if a.dtype != b.dtype or a.shape != b.shape:
                    diffs.append(f'{name}: {a.dtype}{a.shape} != {b.dtype}{b.shape}')
                elif a.compression != b.compression or a.chunks != b.chunks:
                    diffs.append(f'{name}: storage {a.compression}/{a.chunks} != {b.compression}/{b.chunks}')
                elif not _equal(_deref(fa, a[()]), _deref(fb, b[()])):
                    diffs.append(f'{name}: values differ')
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    diffs = compare(*argv)
    for d in diffs:
        print(d)
    print(f'{len(diffs)} difference(s)' if diffs else 'equal (except file_create_date and object ids)')
    return 1 if diffs else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
