"""Where ``alfnwb export`` spends its time and memory: the CLI run with its stages timed.

Runs ``alfnwb.cli.main(ARGS)`` in this process with timers wrapped around the stages of an export
(found by name; a stage that does not exist in this version of alfnwb is left out), and a thread
sampling the RSS. Not a timed variant: the wrappers and the sampler cost a little. Prints one JSON
line: ``{"steps": [[name, depth, start_s, seconds, rss_gb_after, peak_rss_gb_so_far], ...]}``.

    python benchmarks/alfnwb_phases.py --quiet export --pid PID --cache-dir CACHE -o OUT.nwb
"""

import json
import sys
import threading
import time

T0 = time.perf_counter()

import psutil  # noqa: E402

_PROC = psutil.Process()
_PEAK = [0]
STEPS = []
_DEPTH = [0]

# (module, attribute, label): the stages of an export, outermost first
STAGES = [
    ('alfnwb.export', 'load_session', 'load (ONE, SpikeSortingLoader, checks)'),
    ('alfnwb.loading', 'corrupt_datasets', 'ALF file checks'),
    ('alfnwb.loading', '_check', 'consistency checks'),
    ('alfnwb.export', 'hold_on_disk', 'times, amps and depths to disk (large probes)'),
    ('alfnwb.export', 'build_analyzers', 'SortingAnalyzer extensions'),
    ('alfnwb.analyzer', 'vector_order', 'spike vector (sort unless in order)'),
    ('alfnwb.extensions', 'correlograms', 'correlograms'),
    ('alfnwb.extensions', 'isi_histograms', 'ISI histograms'),
    ('alfnwb.extensions', 'cosine_similarity', 'template similarity'),
    ('alfnwb.analyzer', 'dense_templates', 'dense templates'),
    ('alfnwb.export', 'build_nwbfile', 'build the NWBFile in memory'),
    ('alfnwb.nwb.units', 'add_units', 'units table'),
    ('alfnwb.nwb.analyzer', 'add_spike_sorting', 'ndx-spikesorting containers'),
    ('alfnwb.export', 'write_nwbfile', 'write (HDF5) + validate + rename'),
    ('alfnwb.nwb.io', '_write_isolated', 'HDF5 write'),
    ('alfnwb.nwb.io', 'validate', 'pynwb validation'),
]


def _sample():
    while True:
        _PEAK[0] = max(_PEAK[0], _PROC.memory_info().rss)
        time.sleep(0.02)


def _wrap(func, label):
    def wrapper(*args, **kwargs):
        depth = _DEPTH[0]
        _DEPTH[0] += 1
        t = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            _DEPTH[0] = depth
            rss = _PROC.memory_info().rss
            _PEAK[0] = max(_PEAK[0], rss)
            STEPS.append([label, depth, round(t - T0, 3), round(time.perf_counter() - t, 3), round(rss / 1e9, 3),
                          round(_PEAK[0] / 1e9, 3)])
    return wrapper


def _install():
    import importlib

    for mod_name, attr, label in STAGES:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        if callable(getattr(mod, attr, None)):
            setattr(mod, attr, _wrap(getattr(mod, attr), label))
    try:  # SpikeInterface's own computations (random_spikes, isi_histograms)
        from spikeinterface.core import SortingAnalyzer

        compute = SortingAnalyzer.compute

        def timed_compute(self, input, *args, **kwargs):
            return _wrap(compute, f'SpikeInterface compute {input}')(self, input, *args, **kwargs)
        SortingAnalyzer.compute = timed_compute
    except ImportError:
        pass


if __name__ == '__main__':
    threading.Thread(target=_sample, daemon=True).start()
    import alfnwb.cli

    _install()
    STEPS.append(['start-up: interpreter, alfnwb.cli and the stage modules', 0, 0.0,
                  round(time.perf_counter() - T0, 3), round(_PROC.memory_info().rss / 1e9, 3),
                  round(_PEAK[0] / 1e9, 3)])
    code = alfnwb.cli.main(sys.argv[1:])
    total = time.perf_counter() - T0
    STEPS.sort(key=lambda s: (s[2], s[1]))
    print(json.dumps({'steps': STEPS, 'total_s': round(total, 3), 'peak_rss_gb': round(_PEAK[0] / 1e9, 3),
                      'exit': code}))
    sys.exit(code)
