"""Large datasets compressed in parallel (ISA-L) and written with HDF5's direct chunk write: standard gzip files."""

import h5py
import numpy as np
import pytest

from alfnwb.nwb import chunks


def _datasets(path) -> dict:
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in 'iuf':
            out[name] = obj
    f = h5py.File(path, 'r')
    f.visititems(visit)
    return f, out


@pytest.fixture(scope='module')
def parallel_and_plain(synth, tmp_path_factory):
    """Session 0 exported twice: every chunked gzip dataset compressed in parallel, and uncompressed."""
    from one.api import One

    from alfnwb.export import export

    one = One(cache_dir=synth.cache_dir, mode='local')
    folder = tmp_path_factory.mktemp('chunks')
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunks, 'PARALLEL_MIN_BYTES', 0)  # every chunked gzip dataset goes the parallel way
        parallel = export(one, folder / 'parallel.nwb', eid=synth.sessions[0].eid, n_jobs=2).path
    plain = export(one, folder / 'plain.nwb', eid=synth.sessions[0].eid, compression=None).path
    return parallel, plain


def test_parallel_gzip_values_equal_and_filters_standard(parallel_and_plain):
    parallel, plain = parallel_and_plain
    fp, dp = _datasets(parallel)
    fq, dq = _datasets(plain)
    spikes = dp['units/spike_times']
    assert spikes.compression == 'gzip' and spikes.shuffle and spikes.chunks is not None
    compressed = [n for n, d in dp.items() if d.compression == 'gzip' and d.shape[0] > 1]
    assert {'units/spike_times', 'units/spike_amplitudes', 'units/spike_depths'} <= set(compressed)
    assert any(dp[n].ndim > 1 for n in compressed)  # n-d chunks (spike locations, templates)
    for name in compressed:
        np.testing.assert_array_equal(dp[name][:], dq[name][:], err_msg=name)
        # each chunk is the stock gzip filter's: HDF5 decompresses it, and the stored bytes are a zlib stream
        assert dp[name].id.get_storage_size() < dq[name].id.get_storage_size() or dp[name].size < 1000
    fp.close()
    fq.close()


def test_parallel_gzip_file_opens_in_pynwb_and_nwbinspector(parallel_and_plain):
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import NWBHDF5IO

    from alfnwb.nwb.io import validate

    parallel, plain = parallel_and_plain
    with NWBHDF5IO(str(parallel), 'r') as a, NWBHDF5IO(str(plain), 'r') as b:
        ua, ub = a.read().units, b.read().units
        np.testing.assert_array_equal(ua['spike_times'].data[:], ub['spike_times'].data[:])
        np.testing.assert_array_equal(ua.get_unit_spike_times(3), ub.get_unit_spike_times(3))
    assert validate(parallel) == []
    assert not [m for m in inspect_nwbfile(nwbfile_path=str(parallel)) if m.importance == Importance.CRITICAL]


def test_deflate_chunk_is_hdf5s_shuffle_and_deflate(tmp_path):
    """A chunk written directly reads back through HDF5's own filters, edge chunk included."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1000, 3)).astype(np.float32)
    with h5py.File(tmp_path / 'd.h5', 'w') as f:
        d = f.create_dataset('x', shape=data.shape, dtype=data.dtype, chunks=(256, 3), compression='gzip',
                             shuffle=True)
        for start in range(0, 1000, 256):
            d.id.write_direct_chunk((start, 0), chunks.deflate_chunk(data[start:start + 256], 256))
    with h5py.File(tmp_path / 'd.h5', 'r') as f:
        np.testing.assert_array_equal(f['x'][:], data)
        np.testing.assert_array_equal(f['x'][990:], data[990:])
