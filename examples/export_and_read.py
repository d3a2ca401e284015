"""Export a synthetic IBL session to NWB, then look at it: units per brain region, one unit's spikes.

Run: python examples/export_and_read.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from one.api import One
from pynwb import NWBHDF5IO

import alfnwb
from alfnwb.synthetic import write_cache


def main(out: Path) -> None:
    cache = write_cache(out / 'one_cache', seed=1, sessions=1, n_units=30, duration=120)
    session = cache.sessions[0]
    one = One(cache_dir=out / 'one_cache', mode='local')

    # what sorters and revisions does probe00 have?
    print(alfnwb.available_sortings(one, session.eid, 'probe00'))

    result = alfnwb.export(one, out / 'session.nwb', eid=session.eid, overwrite=True)
    print(f'wrote {result.path}: {result.n_units} units on {result.n_electrodes} electrodes')

    with NWBHDF5IO(str(result.path), 'r') as io:
        nwb = io.read()
        units = nwb.units.to_dataframe(index=True)
        good = units[units.label == 1]
        print('good units per Beryl region:')
        print(good.groupby(['probe_name', 'beryl_acronym']).size().to_string())
        row = good.index[0]
        times = nwb.units['spike_times'][row]
        electrodes = nwb.units['electrodes'][row]
        print(f'unit {row} ({good.loc[row, "probe_name"]} cluster {good.loc[row, "cluster_id"]}, '
              f'{good.loc[row, "location"]}): {times.size} spikes, first at {times[0]:.4f} s, '
              f'peak channel {electrodes.index[0]} at {electrodes.iloc[0]["location"]}')

    # the lossless bridge: ALF arrays rebuilt from the file alone
    spikes, clusters, channels = alfnwb.read_alf(result.path, probe='probe00')
    print(f'read_alf: {spikes["times"].size} spikes, {clusters["channels"].size} clusters, '
          f'{np.unique(channels["acronym"]).size} regions on probe00')


if __name__ == '__main__':
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix='alfnwb-example-')))
