"""Firing rates of good units per Beryl region, from a folder of exported files.

Run: python examples/firing_rates_by_region.py [FOLDER]
Without a folder, a small synthetic dandiset is made first (3 sessions, exported with alfnwb batch).
"""

import sys
import tempfile
from pathlib import Path

import alfnwb


def make_dandiset(out: Path) -> Path:
    from one.api import One

    from alfnwb.batch import plan_jobs, run_batch
    from alfnwb.synthetic import write_cache

    cache = write_cache(out / 'one_cache', seed=21, sessions=3, n_units=30, duration=60)
    one = One(cache_dir=cache.cache_dir, mode='local')
    # units by region need no SortingAnalyzer extensions: leave them out, as for the PSTH example
    run_batch(plan_jobs(one, all_insertions=True), out / 'dandiset', {'cache_dir': str(cache.cache_dir)},
              validate=False, progress=False, export_kwargs={'extensions': 'none'})
    return out / 'dandiset'


def main(folder: Path) -> None:
    catalog = alfnwb.update_catalog(folder)  # one pass over the files; later queries open no NWB file
    print(f'catalog: {catalog.n_units} units in {catalog.n_files} files')

    good = alfnwb.read_units(catalog.path, region='root', mapping='Beryl', min_label=1)  # root: every located unit
    table = (good.groupby('beryl_acronym')['firing_rate']
             .agg(units='size', median_hz='median', mean_hz='mean')
             .sort_values('units', ascending=False))
    print('good units per Beryl region:')
    print(table.round(2).to_string())

    # spikes of the selected units only (partial reads), e.g. to check a rate by hand
    times = alfnwb.load_spike_times(good.head(3))
    for (_, unit), t in zip(good.head(3).iterrows(), times):
        print(f'{unit["probe"]} cluster {unit["cluster_id"]} ({unit["acronym"]}): {t.size} spikes, '
              f'{t.size / (t[-1] - t[0]):.2f} Hz between its first and last spike')


if __name__ == '__main__':
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else make_dandiset(Path(tempfile.mkdtemp(prefix='alfnwb-')))
    main(folder)
