"""Extra cost of IBL's extracted waveforms (waveforms.*): time, peak memory and stored size per dataset.

Synthesizes one session with a raw band (IBL's ``extract_wfs_cbin`` writes ``waveforms.*``), then
exports probe00 in fresh processes: ``--extensions none``, the ALF extensions only, and the default
(which adds ``waveforms`` and ``principal_components`` from ``waveforms.*``). Prints a Markdown table.

    python benchmarks/waveforms_cost.py --units 1000 --duration 100 --workdir /tmp/alfnwb-wfbench

Only probe00 gets a raw band and ``waveforms.*``. The synthesis (IBL's extraction, whose per-cluster
median dominates) is written once into ``--workdir`` and reused by later runs with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from one.api import One
from alfnwb.export import export
cache, pid, out, ext = sys.argv[1:5]
t = time.perf_counter()
export(One(cache_dir=cache, mode='local'), out, pid=pid, extensions=None if ext == 'default' else ext, overwrite=True)
print(json.dumps({'s': time.perf_counter() - t, 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

ALF_ONLY = ('random_spikes,templates,spike_amplitudes,spike_locations,unit_locations,correlograms,isi_histograms,'
            'template_similarity,quality_metrics')


def sizes(path: Path) -> dict[str, tuple[tuple, int]]:
    """Stored bytes and shape of every dataset above 100 kB."""
    import h5py

    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.id.get_storage_size() > 1e5:
            out[name] = (obj.shape, obj.id.get_storage_size())
    with h5py.File(path, 'r') as f:
        f.visititems(visit)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--units', type=int, default=1000)
    p.add_argument('--duration', type=float, default=100.0, help='s of raw band')
    p.add_argument('--synth-only', action='store_true', help='write the synthetic session and stop')
    p.add_argument('--workdir', default='/tmp/alfnwb-wfbench')
    args = p.parse_args()
    from alfnwb.synthetic import write_cache

    work = Path(args.workdir)
    stamp = work / f'synth-{args.units}-{args.duration:g}.json'
    if not stamp.exists():
        t = time.perf_counter()
        cache = write_cache(work / 'cache', seed=3, sessions=1, n_units=args.units, duration=args.duration,
                            raw=('probe00',))
        pid = cache.sessions[0].probes[0].pid
        stamp.write_text(json.dumps({'pid': pid, 'synthesis_s': time.perf_counter() - t}))
    synth = json.loads(stamp.read_text())
    print(f'synthesis with waveforms.* (IBL extract_wfs_cbin): {synth["synthesis_s"]:.0f} s', flush=True)
    wf = next((work / 'cache').rglob('waveforms.traces.npy'))
    import numpy as np
    traces = np.load(wf, mmap_mode='r')
    print(f'waveforms.traces: {traces.shape} {traces.dtype}, {wf.stat().st_size / 1e9:.2f} GB', flush=True)
    if args.synth_only:
        return
    print('| export | time (s) | peak RSS (MB) | file (MB) |\n|---|---|---|---|')
    for ext in ('none', ALF_ONLY, 'default'):
        out = work / f'{ext[:12].replace(",", "_")}.nwb'
        res = subprocess.run([sys.executable, '-c', CHILD, str(work / 'cache'), synth['pid'], str(out), ext],
                             capture_output=True, text=True, check=True)
        m = json.loads(res.stdout.strip().splitlines()[-1])
        label = 'ALF extensions' if ext == ALF_ONLY else ext
        print(f'| {label} | {m["s"]:.1f} | {m["rss_mb"]:.0f} | {out.stat().st_size / 1e6:.1f} |', flush=True)
    print('\n| dataset | shape | stored (MB) |\n|---|---|---|')
    for name, (shape, size) in sorted(sizes(out).items(), key=lambda x: -x[1][1]):
        print(f'| `{name}` | {" x ".join(map(str, shape))} | {size / 1e6:.2f} |')


if __name__ == '__main__':
    main()
