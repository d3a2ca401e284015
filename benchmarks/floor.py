"""The floor: what any exporter of a probe's spikes must at least do.

``np.load`` of the ALF spike arrays (``spikes.times``, ``spikes.clusters``, ``spikes.amps``,
``spikes.depths``) and one bulk, uncompressed ``h5py`` write of the same arrays. Run in a fresh
process by ``export_full_probe.py``; prints its phases as JSON on the last line of stdout.

    python benchmarks/floor.py ALF_DIR OUT.h5
"""

import json
import sys
import time

T0 = time.perf_counter()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

ARRAYS = ('times', 'clusters', 'amps', 'depths')


def main(alf_dir: str, out: str) -> dict:
    phases = {'import_s': time.perf_counter() - T0}
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
    print(json.dumps({'phases': main(sys.argv[1], sys.argv[2])}))
