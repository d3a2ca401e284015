"""Nothing silent: each degradation is a warning of ours, shown once, kept in the file and the manifest."""

import shutil
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from alfnwb.cli import main
from alfnwb.errors import AlfNwbWarning, DataWarning
from alfnwb.nwb import layout


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('warncache'), seed=21, sessions=1, n_units=8, duration=20.0)


@pytest.fixture
def degraded(base, tmp_path):
    """A copy of the cache whose probe01 metrics table lacks clusters 2 and 5 (IBL tables may skip clusters)."""
    shutil.copytree(base.cache_dir, tmp_path / 'cache')
    s = base.sessions[0]
    folder = tmp_path / 'cache' / s.path.relative_to(base.cache_dir) / 'alf/probe01/pykilosort'
    metrics = pd.read_parquet(folder / 'clusters.metrics.pqt')
    assert list(metrics['cluster_id']) == list(range(8))
    metrics[~metrics['cluster_id'].isin([2, 5])].to_parquet(folder / 'clusters.metrics.pqt')
    return tmp_path / 'cache', s.probes[1].pid


MESSAGE = 'clusters.metrics has 6 rows for 8 clusters: reindexed by cluster_id, 2 clusters without metrics (NaN)'


def _provenance_warnings(path):
    with h5py.File(path, 'r') as f:
        return [w.decode() for w in f[f'{layout.PROVENANCE_PATH}/warnings'][:]]


def test_degradation_is_a_warning_and_recorded_in_the_file(degraded, tmp_path):
    from one.api import One

    import alfnwb

    cache, pid = degraded
    with pytest.warns(DataWarning, match=f'insertion {pid}: clusters.metrics has 6 rows'):
        result = alfnwb.export(One(cache_dir=cache, mode='local'), tmp_path / 'p.nwb', pid=pid)
    assert result.probes[0].warnings == f'insertion {pid}: {MESSAGE}'
    assert _provenance_warnings(result.path) == [f'insertion {pid}: {MESSAGE}']
    assert alfnwb.info(result.path)['probes'][0]['warnings'] == f'insertion {pid}: {MESSAGE}'
    _, clusters, _ = alfnwb.read_alf(result.path)
    label = clusters['metrics']['label'].to_numpy(dtype=float)
    assert np.isnan(label[[2, 5]]).all() and np.isfinite(label[[0, 1, 3, 4, 6, 7]]).all()


def test_clean_export_records_no_warning(base, tmp_path):
    from one.api import One

    import alfnwb

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = alfnwb.export(One(cache_dir=base.cache_dir, mode='local'), tmp_path / 's.nwb',
                               eid=base.sessions[0].eid)
    assert [w for w in caught if issubclass(w.category, AlfNwbWarning)] == []
    assert _provenance_warnings(result.path) == ['', '']


def test_cli_prints_each_warning_once_even_when_quiet(degraded, tmp_path, capsys):
    cache, pid = degraded
    out = tmp_path / 'q.nwb'
    assert main(['--quiet', 'export', '--pid', pid, '--cache-dir', str(cache), '-o', str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f'alfnwb: warning: insertion {pid}: {MESSAGE}']  # once, and no progress line
    assert main(['info', str(out)]) == 0
    assert f'    warning: insertion {pid}: {MESSAGE}' in capsys.readouterr().out.splitlines()


def test_progress_reports_each_stage(degraded, tmp_path, capsys):
    cache, pid = degraded
    assert main(['export', '--pid', pid, '--cache-dir', str(cache), '-o', str(tmp_path / 'v.nwb')]) == 0
    err = capsys.readouterr().err
    for stage in (f'loading insertion {pid}', 'probe01: random_spikes', 'probe01: correlograms',
                  'building the NWB file (8 units)', 'writing ', 'validating v.nwb (pynwb schema)'):
        assert stage in err
    assert err.count('alfnwb: warning:') == 1


def test_strict_turns_warnings_into_errors(degraded, tmp_path, capsys):
    cache, pid = degraded
    out = tmp_path / 's.nwb'
    code = main(['--strict', 'export', '--pid', pid, '--cache-dir', str(cache), '-o', str(out)])
    assert code == DataWarning.exit_code == 5
    assert capsys.readouterr().err.strip().endswith(f'alfnwb: error: insertion {pid}: {MESSAGE} (--strict)')
    assert not out.exists() and not list(tmp_path.glob('.s.*'))
    assert main(['export', '--strict', '--pid', pid, '--cache-dir', str(cache), '-o', str(out)]) == 5


def test_batch_manifest_and_summary_keep_warnings(degraded, tmp_path, capsys):
    cache, pid = degraded
    pids = tmp_path / 'pids.txt'
    pids.write_text(pid + '\n')
    code = main(['--quiet', 'batch', '--pids', str(pids), '--cache-dir', str(cache), '--dandiset-dir',
                 str(tmp_path / 'ds'), '--no-validate'])
    assert code == 0
    captured = capsys.readouterr()
    assert f'alfnwb: warning: insertion {pid}: {MESSAGE}' in captured.err.splitlines()
    assert '1 exported, 0 already done (skipped), 0 failed, 1 warning(s) in 1 file(s)' in captured.out
    manifest = pd.read_parquet(tmp_path / 'ds' / '.alfnwb' / 'manifest.parquet').set_index('key')
    assert manifest.loc[pid, 'warnings'] == f'insertion {pid}: {MESSAGE}'


def test_other_warnings_are_not_swallowed(degraded, tmp_path, capsys, monkeypatch):
    import alfnwb.nwb.units as units

    add_units = units.add_units

    def noisy(*args, **kwargs):
        warnings.warn('a third-party library has something to say', UserWarning)
        return add_units(*args, **kwargs)

    monkeypatch.setattr(units, 'add_units', noisy)
    cache, pid = degraded
    assert main(['--quiet', 'export', '--pid', pid, '--cache-dir', str(cache), '-o', str(tmp_path / 'n.nwb')]) == 0
    assert 'UserWarning: a third-party library has something to say' in capsys.readouterr().err


def _probe_folder(base, cache, probe):
    coll = 'alf/probe00/iblsorter/#2024-05-06#' if probe == 0 else 'alf/probe01/pykilosort'
    return cache / base.sessions[0].path.relative_to(base.cache_dir) / coll


def _narrow_templates(folder, keep_peak: bool, width: int = 8):
    """Keep ``width`` template channels per cluster: a window around the peak, or the first ones."""
    wf, wfc = np.load(folder / 'clusters.waveforms.npy'), np.load(folder / 'clusters.waveformsChannels.npy')
    peak = np.load(folder / 'clusters.channels.npy')
    pos = np.argmax(wfc == peak[:, None], axis=1)
    start = np.clip(pos - width // 2, 0, wfc.shape[1] - width) if keep_peak else np.zeros_like(pos)
    idx = start[:, None] + np.arange(width)
    np.save(folder / 'clusters.waveformsChannels.npy', np.take_along_axis(wfc, idx, axis=1))
    np.save(folder / 'clusters.waveforms.npy', np.take_along_axis(wf, idx[:, None, :], axis=2))
    return int((~(np.take_along_axis(wfc, idx, axis=1) == peak[:, None]).any(axis=1)).sum())


def _export_narrowed(base, tmp_path, keep_peak):
    from one.api import One

    import alfnwb

    cache = tmp_path / 'cache'
    shutil.copytree(base.cache_dir, cache)
    missing = _narrow_templates(_probe_folder(base, cache, 1), keep_peak)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = alfnwb.export(One(cache_dir=cache, mode='local'), tmp_path / 'w.nwb', eid=base.sessions[0].eid)
    ours = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    return result, missing, ours


def test_templates_of_different_shapes_drop_waveform_mean_for_every_probe(base, tmp_path):
    result, missing, ours = _export_narrowed(base, tmp_path, keep_peak=True)
    assert missing == 0 and len(ours) == 2 and all('waveform_mean not written for any probe' in m for m in ours)
    recorded = _provenance_warnings(result.path)
    assert len(recorded) == 2 and all('x8' in w and 'other probes of the file differ' in w for w in recorded)
    assert recorded[0].startswith(f'insertion {result.probes[0].pid}: ')
    with h5py.File(result.path, 'r') as f:
        assert 'waveform_mean' not in f['units'] and 'templates' in f['processing/ecephys/probe01/extensions']


def test_templates_missing_the_peak_channel_drop_waveform_mean(base, tmp_path):
    result, missing, ours = _export_narrowed(base, tmp_path, keep_peak=False)
    pid = base.sessions[0].probes[1].pid
    assert missing > 0
    assert ours == [f'insertion {pid}: clusters.waveformsChannels misses the peak channel of {missing} clusters; '
                    'waveform_mean not written']
    assert _provenance_warnings(result.path) == ['', ours[0]]


def test_missing_spike_samples_are_derived_with_a_warning(base):
    from one.api import One

    from alfnwb.analyzer import build_analyzer
    from alfnwb.loading import load_probe

    probe = load_probe(One(cache_dir=base.cache_dir, mode='local'), base.sessions[0].probes[1].pid)
    samples = probe.spikes.pop('samples')
    with pytest.warns(DataWarning, match=r'no spikes\.samples; sample indices derived from spikes\.times at 30000 Hz'):
        analyzer = build_analyzer(probe, 'correlograms')
    derived = analyzer.sorting.to_spike_vector()['sample_index']
    np.testing.assert_array_equal(np.sort(derived), np.sort(np.round(probe.spikes['times'] * 30000).astype(np.int64)))
    assert not np.array_equal(np.sort(derived), np.sort(samples))  # the probe clock drifts: samples != times * fs
