"""The floor: what any exporter of a probe's spikes must at least do.

``np.load`` of the ALF spike arrays (``spikes.times``, ``spikes.clusters``, ``spikes.amps``,
``spikes.depths``) and one bulk, uncompressed ``h5py`` write of the same arrays. With
``--with-imports`` it first imports what any NWB export of IBL data loaded through ONE needs
(``one.api``, ``brainbox.io.one``, ``pynwb``, ``spikeinterface.core``): the import-inclusive floor.
Run in a fresh process by ``export_full_probe.py``; prints its phases as JSON on the last line of
stdout.

    python benchmarks/floor.py [--with-imports] ALF_DIR OUT.h5
"""

import json
import sys
import time

T0 = time.perf_counter()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

ARRAYS = ('times', 'clusters', 'amps', 'depths')
#: What an export from ONE to NWB cannot avoid importing (the import floor of export_full_probe.py).
IMPORTS = ('one.api', 'brainbox.io.one', 'pynwb', 'spikeinterface.core')


def main(alf_dir: str, out: str, with_imports: bool = False) -> dict:
    """Load the four ALF spike arrays and write them once; the seconds of each phase.

    Parameters
    ----------
    alf_dir : str
        The sorting's ALF folder (``spikes.*.npy``).
    out : str
        The HDF5 file written.
    with_imports : bool
        Import :data:`IMPORTS` first (timed as ``imports_s``).

    Returns
    -------
    dict
        Seconds of ``import_s`` (numpy, h5py), ``imports_s``, ``load_s``, ``write_s``; ``bytes`` moved.
    """
    import importlib

    phases = {'import_s': time.perf_counter() - T0}
    if with_imports:
        t = time.perf_counter()
        for name in IMPORTS:
            importlib.import_module(name)
        phases['imports_s'] = time.perf_counter() - t
    t = time.perf_counter()
    data = {k: np.load(f'{alf_dir}/spikes.{k}.npy') for k in ARRAYS}
    phases['load_s'] = time.perf_counter() - t
    t = time.perf_counter()
    with h5py.File(out, 'w') as f:
        for k, v in data.items():
            f.create_dataset(f'spikes/{k}', data=v)
    phases['write_s'] = time.perf_counter() - t
    phases['bytes'] = int(sum(v.nbytes for v in data.values()))
    return phases


if __name__ == '__main__':
    args = sys.argv[1:]
    flag = '--with-imports' in args
    paths = [a for a in args if a != '--with-imports']
    if len(paths) != 2:
        sys.exit(__doc__.rstrip().splitlines()[-1].strip())
    print(json.dumps({'phases': main(*paths, with_imports=flag)}))
