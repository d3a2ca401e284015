"""Open the SpikeInterface SortingAnalyzer stored in an exported file; plot a unit's template and
autocorrelogram.

Run: python examples/analyzer_template_acg.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # write a PNG, no window needed
import matplotlib.pyplot as plt
import numpy as np
from one.api import One

import alfnwb
from alfnwb.synthetic import write_cache


def main(out: Path) -> None:
    cache = write_cache(out / 'one_cache', seed=2, sessions=1, n_units=20, duration=120)
    one = One(cache_dir=out / 'one_cache', mode='local')
    pid = cache.sessions[0].probes[0].pid
    result = alfnwb.export(one, out / 'probe00.nwb', pid=pid, overwrite=True)  # default extensions
    print(f'wrote {result.path} with extensions: {", ".join(result.extensions)}')

    analyzer = alfnwb.read_sorting_analyzer(result.path, probe='probe00')
    print(analyzer)
    metrics = analyzer.get_extension('quality_metrics').get_data()
    unit = int(metrics['firing_rate'].idxmax())  # unit ids are the ALF cluster ids
    print(f'unit {unit}: {metrics.loc[unit, "firing_rate"]:.1f} Hz, IBL label {metrics.loc[unit, "label"]:.2f}')

    templates = analyzer.get_extension('templates')
    template = templates.get_unit_template(unit)  # (samples, channels), uV
    best = int(np.abs(template).max(axis=0).argmax())
    ccgs, bins = analyzer.get_extension('correlograms').get_data()
    index = list(analyzer.unit_ids).index(unit)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    t_ms = (np.arange(template.shape[0]) - templates.nbefore) / analyzer.sampling_frequency * 1e3
    ax1.plot(t_ms, template[:, best], color='k')
    ax1.set(xlabel='time from trough (ms)', ylabel='uV', title=f'unit {unit} template, channel {best}')
    ax2.bar(bins[:-1], ccgs[index, index], width=np.diff(bins), align='edge', color='tab:blue')
    ax2.set(xlabel='lag (ms)', ylabel='spike pairs', title='autocorrelogram')
    fig.tight_layout()
    png = out / f'unit{unit}.png'
    fig.savefig(png, dpi=100)
    print(f'plotted {png}')


if __name__ == '__main__':
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix='alfnwb-example-')))
