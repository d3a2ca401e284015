"""benchmarks/export_full_probe.py end to end on a tiny probe: every variant runs and is measured.

No timing is asserted (docs/performance.md holds the full-size numbers).
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """One tiny run of every variant (the peer only if neuroconv is installed), outputs kept."""
    tmp = tmp_path_factory.mktemp('bench')
    doc = tmp / 'performance.md'
    cmd = [sys.executable, str(SCRIPT), '--spikes', str(SPIKES), '--units', str(UNITS), '--channels', '384',
           '--repeat', '1', '--cli-repeat', '1', '--variants', 'floor,core,default,peer',
           '--workdir', str(tmp / 'work'),
           '--output', str(doc), '--keep-outputs', '--no-phases']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
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
    for name in ('floor', 'core', 'default'):
        _check_variant(res, name)
    outputs = Path(res['outputs_dir'])
    for name in ('core', 'default'):
        assert validate(path=str(outputs / f'{name}.nwb')) == []
    import h5py
    with h5py.File(outputs / 'floor.h5') as f:
        assert f['spikes/times'].shape == (SPIKES,) and f['spikes/clusters'].dtype == np.uint32
    for name in ('help', 'info'):
        assert res['cli'][name]['ok'] and res['cli'][name]['wall_s_median'] > 0
    assert res['machine']['cores'] >= 1 and res['machine']['packages']['pynwb']
    keys = {t['key'] for t in res['targets']}
    assert {'core_wall_vs_floor', 'core_rss_vs_alf_bytes', 'help_s', 'info_s'} <= keys
    text = doc.read_text()
    assert '| core |' in text and '| default |' in text and '## Optimisations' in text


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
