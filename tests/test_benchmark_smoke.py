"""benchmarks/export_full_probe.py end to end on tiny probes: every measurement runs and is measured.

One size (further sizes run the same variants through the same code: ``--sizes``), the import
floor, the small export and ``alfnwb demo``, and a 1-insertion batch with 1 and 2 local workers and
2 Dask workers. No timing is asserted (docs/performance.md holds the full-size numbers). Kept to
the fewest fresh processes: each one imports ONE, pynwb and SpikeInterface.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'export_full_probe.py'
SPIKES, UNITS = 200_000, 30
BATCH_INSERTIONS = 2

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """One tiny run of every measurement (the peer only if neuroconv is installed), outputs kept."""
    tmp = tmp_path_factory.mktemp('bench')
    doc = tmp / 'performance.md'
    cmd = [sys.executable, str(SCRIPT), '--sizes', f'{SPIKES}x{UNITS}', '--channels', '384',
           '--repeat', '1', '--cli-repeat', '1',
           '--variants', 'floor,floor_imports,core,default,peer', '--workdir', str(tmp / 'work'),
           '--batch', '--batch-insertions', str(BATCH_INSERTIONS), '--batch-spikes', '1e5', '--batch-units', '20',
           '--batch-repeat', '1', '--batch-modes', '1,dask2,pair', '--output', str(doc), '--keep-outputs',
           '--no-phases']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(doc.with_suffix('.json').read_text()), doc


def _check_variant(res, name):
    d = res['variants'][name]
    assert d['ok'] and len(d['runs']) == 1
    run = d['runs'][0]
    assert run['returncode'] == 0
    assert run['wall_s'] > 0 and run['peak_rss_bytes'] > 0 and run['output_bytes'] > 0
    assert d['wall_s_median'] > 0 and d['peak_rss_bytes_max'] > 0 and d['output_bytes'] > 0
    return d


def test_alfnwb_variants(bench):
    from pynwb import validate

    res, doc = bench
    assert res['sizes']['spikes'] == SPIKES and res['sizes']['units'] == UNITS and res['sizes']['channels'] == 384
    assert res['sizes']['alf_bytes'] == SPIKES * (8 + 4 + 8 + 4)  # times f8, clusters u4, amps f8, depths f4
    for name in ('floor', 'floor_imports', 'core', 'default'):
        _check_variant(res, name)
    assert res['variants']['floor_imports']['phases_median_s']['imports_s'] > 0
    outputs = Path(res['outputs_dir'])
    for name in ('core', 'default'):
        assert validate(path=str(outputs / f'{name}.nwb')) == []
    import h5py
    with h5py.File(outputs / 'floor.h5') as f:
        assert f['spikes/times'].shape == (SPIKES,) and f['spikes/clusters'].dtype == np.uint32
    for name in ('help', 'info'):
        assert res['cli'][name]['ok'] and res['cli'][name]['wall_s_median'] > 0
    assert res['machine']['cores'] >= 1 and res['machine']['packages']['pynwb']
    size = f'{SPIKES}x{UNITS}'
    measured = {t['key'] for t in res['targets'] if t['measured']}
    assert {f'core_wall_vs_floor_imports@{size}', f'core_rss_vs_alf_bytes@{size}', f'default_rss_vs_alf_bytes@{size}',
            'small_export_vs_import_floor', 'demo_s', 'dask_speedup_2_workers', 'help_s',
            'info_s'} <= measured
    text = doc.read_text()
    assert '| core |' in text and '| default |' in text and '## Optimisations' in text
    assert '### Fixed cost' in text and 'LocalCluster' in text


def test_fixed_cost(bench):
    """The import floor, the small export of the demo's probe00 and alfnwb demo: run and measured."""
    res, _ = bench
    assert res['imports']['ok'] and res['imports']['wall_s_median'] > 0
    small = res['small']
    assert small['pid'] and small['probe'] == 'probe00'
    assert small['export']['ok'] and small['export']['wall_s_median'] > 0 and small['export']['output_bytes'] > 0
    assert small['demo']['ok'] and small['demo']['wall_s_median'] > 0 and small['demo']['files'] == 1
    assert (Path(res['outputs_dir']) / 'small.nwb').stat().st_size > 0


def test_batch(bench):
    """alfnwb batch with 1 local worker, run_batch on 2 Dask workers and the pair of independent 1-worker
    batches (one insertion each): every insertion written, steady-state speed-ups against 1 worker (the
    run with 2 local workers is the same command as with 1)."""
    import distributed  # noqa: F401 - a dependency: the Dask batch needs it

    res, doc = bench
    b = res['batch']
    assert b['insertions'] == BATCH_INSERTIONS and set(b['workers']) == {'1', 'dask2', 'pair'}
    for mode, d in b['workers'].items():
        (run,) = d['runs']
        assert d['ok'] and run['returncode'] == 0 and run['files'] == BATCH_INSERTIONS, (mode, run)
        assert d['wall_s_median'] > 0 and d['batch_s_median'] > 0 and len(run['job_s']) == BATCH_INSERTIONS
        assert d['steady_insertions_per_min'] == pytest.approx(
            60 * (1 if mode == '1' else 2) / float(np.median(run['job_s'])))
    assert b['workers']['dask2']['cluster_start_s_median'] > 0
    assert b['workers']['dask2']['runs'][0]['profiling_workers'] == 0  # started as docs/publish.md advises
    assert 'speedup_2_workers' not in b and b['speedup_dask_2_workers'] > 0 and b['speedup_pair'] > 0
    assert b['steady_speedup_dask_2_workers'] > 0 and b['steady_speedup_pair'] > 0
    run = Path(res['outputs_dir']).parent
    halves = [(run / f'batch_pids-half{i}.txt').read_text().split() for i in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted((run / 'batch_pids.txt').read_text().split())
    assert len(halves[0]) == len(halves[1]) == 1
    assert 'two `alfnwb batch --workers 1` at once' in doc.read_text()


def test_peer_variant(bench):
    pytest.importorskip('neuroconv')
    from pynwb import validate

    res, doc = bench
    d = _check_variant(res, 'peer')
    assert set(d['runs'][0]['extensions']) == {'random_spikes', 'templates', 'spike_amplitudes', 'spike_locations',
                                               'unit_locations', 'correlograms', 'isi_histograms',
                                               'template_similarity', 'quality_metrics'}
    assert d['phases_median_s']['correlograms'] >= 0
    assert validate(path=str(Path(res['outputs_dir']) / 'peer.nwb')) == []
    assert {t['key'] for t in res['targets']} >= {'peer_wall_vs_default', 'default_size_vs_peer'}
    assert '| peer |' in doc.read_text()


def test_synthesized_probe_is_ibl_like(bench):
    """Exact spike count, IBL's ALF dtypes and metric names, realistic rates; the cache is reused."""
    from alfnwb.nwb.units import METRIC_DESCRIPTIONS

    res, _ = bench
    cache = Path(res['sizes']['cache_dir'])
    alf = next(cache.glob('*/Subjects/*/*/001/alf/probe00/iblsorter/#2024-05-06#'))
    dtypes = {'times': np.float64, 'samples': np.int64, 'clusters': np.uint32, 'amps': np.float64,
              'depths': np.float32, 'templates': np.uint32}
    for attr, dtype in dtypes.items():
        a = np.load(alf / f'spikes.{attr}.npy')
        assert a.dtype == dtype and a.shape == (SPIKES,)
    times = np.load(alf / 'spikes.times.npy')
    assert np.all(np.diff(times) >= 0)
    clu = np.load(alf / 'spikes.clusters.npy')
    rates = np.bincount(clu, minlength=UNITS) / res['sizes']['duration_s']
    assert rates.max() <= 70 and 1 < np.median(rates) < 20
    m = pd.read_parquet(alf / 'clusters.metrics.pqt')
    assert len(m) == UNITS and set(m.columns) - {'cluster_id'} <= set(METRIC_DESCRIPTIONS)
    np.testing.assert_array_equal(m['spike_count'].to_numpy(), np.bincount(clu, minlength=UNITS))
    assert (cache / 'synth_probe.json').exists()  # marks the cache as complete: later runs skip synthesis
