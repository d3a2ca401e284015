"""How do Beryl regions respond to stimulus onset, by contrast? From a folder of exported files.

Run: python examples/psth_by_region.py [FOLDER [PNG]]
Without a folder, a small synthetic dandiset is made first (3 sessions with a task, exported with
alfnwb batch).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import alfnwb


def make_dandiset(out: Path) -> Path:
    from one.api import One

    from alfnwb.batch import plan_jobs, run_batch
    from alfnwb.synthetic import write_cache

    cache = write_cache(out / 'one_cache', seed=21, sessions=3, n_units=16, duration=60)
    one = One(cache_dir=cache.cache_dir, mode='local')
    run_batch(plan_jobs(one, all_insertions=True), out / 'dandiset', {'cache_dir': str(cache.cache_dir)},
              validate=False, progress=False, export_kwargs={'extensions': 'none'})
    return out / 'dandiset'


def main(folder: Path, png: Path) -> None:
    units = alfnwb.read_units(folder, region='root', mapping='Beryl')  # root: every located unit
    print(f'{len(units)} located units in {units["file"].nunique()} files')
    # the stimulus is on one side: its contrast is contrastLeft or contrastRight (the other is NaN)
    psth = alfnwb.peri_event(units, 'stimOn_times', window=(-0.2, 0.4), bin_size=0.02, by='contrastRight')
    print(f'trials left out for a NaN stimOn_times: '
          f'{psth.drop_duplicates(["file", "contrastRight"])["n_trials_nan"].sum()}')
    regions = alfnwb.peri_event_by_region(psth, mapping='Beryl')
    # response: mean rate 40-240 ms after onset minus the 200 ms before, per region and contrast
    after = regions[regions['time'].between(0.04, 0.24)].groupby(['region', 'contrastRight'], dropna=False)
    before = regions[regions['time'] < 0].groupby(['region', 'contrastRight'], dropna=False)
    response = (after['rate_mean'].mean() - before['rate_mean'].mean()).unstack('contrastRight')
    response.columns = [f'c={c:g}' if np.isfinite(c) else 'left stim' for c in response.columns]
    print('response to stimulus onset (Hz, after - before), by Beryl region and contrastRight:')
    print(response.round(1).to_string())
    out = alfnwb.plot_psth(regions, output=png)
    print(f'wrote {out}')


if __name__ == '__main__':
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else make_dandiset(Path(tempfile.mkdtemp(prefix='alfnwb-')))
    png = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix='alfnwb-')) / 'psth.png'
    main(folder, png)
