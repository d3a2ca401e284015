"""Synthetic raw data: IBL's raw_ephys_data layout, read back by ibl-neuropixel and SpikeInterface,
consistent with the ALF spike sorting; and the probe clocks of spikes.times."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from alfnwb.synthetic import FS, RAW_FORMATS, RAW_NOISE_UV, probe_geometry, raw_sample2volts, write_cache

DURATION = 3.0
N_SAMPLES = int(DURATION * FS)
NAMES = ('probe00', 'probe01')  # session template 0: NP1 and NP2.4 (four shanks)


@pytest.fixture(scope='module')
def raw_cache(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp('raw_cache'), seed=11, sessions=1, n_units=12, duration=DURATION,
                       raw=True)


@pytest.fixture(params=NAMES)
def probe(raw_cache, request):
    return next(p for p in raw_cache.probes if p.name == request.param)


def _noise_v(layout):
    """Noise std of the int16 data, V: Gaussian noise plus the rounding to ADC counts."""
    s2v = raw_sample2volts(layout)
    return np.sqrt((RAW_NOISE_UV * 1e-6) ** 2 + s2v ** 2 / 12)


def _ibl_reader(probe):
    import spikeglx

    return spikeglx.Reader(probe.raw_path, sort=False)  # channels in file order


def test_real_neuropixels_gains():
    assert raw_sample2volts('NP1') == pytest.approx(0.6 / 512 / 500)  # 2.34375 uV, as neuropixel.S2V_AP
    assert raw_sample2volts('NP2.4') == pytest.approx(0.62 / 8192 / 80)
    assert RAW_FORMATS['NP1']['max_int'] == 512 and RAW_FORMATS['NP2.4']['max_int'] == 8192


def test_raw_files_in_ibl_layout_listed_by_one(raw_cache):
    from one.api import ONE

    session = raw_cache.sessions[0]
    one = ONE(cache_dir=raw_cache.cache_dir, mode='local')
    for k, name in enumerate(NAMES):
        p = next(p for p in session.probes if p.name == name)
        stem = f'_spikeglx_ephysData_g0_t0.imec{k}.ap'
        assert p.raw_path == session.path / 'raw_ephys_data' / name / f'{stem}.cbin'
        collection = f'raw_ephys_data/{name}'
        listed = one.list_datasets(session.eid, collection=collection)
        assert sorted(listed) == sorted(f'{collection}/{stem}.{ext}' for ext in ('cbin', 'ch', 'meta'))
        path = one.load_dataset(session.eid, f'{stem}.cbin', collection=collection, download_only=True)
        assert path.samefile(p.raw_path)
        # the temporary flat binary is gone
        assert sorted(f.name for f in p.raw_path.parent.iterdir()) == [f'{stem}.{e}' for e in ('cbin', 'ch', 'meta')]
    dsets = pd.read_parquet(raw_cache.cache_dir / 'datasets.pqt')
    raw = dsets[dsets['rel_path'].str.startswith('raw_ephys_data/')]
    assert len(raw) == 6 and raw['default_revision'].all()
    for _, row in raw.iterrows():
        f = session.path / row.rel_path
        assert f.stat().st_size == row.file_size and hashlib.md5(f.read_bytes()).hexdigest() == row['hash']


def test_ibl_reader(probe):
    import spikeglx

    geo = probe_geometry(probe.layout)
    sr = _ibl_reader(probe)
    assert sr.is_mtscomp and sr.version == ('3B2' if probe.layout == 'NP1' else 'NP2.4')
    assert (sr.nc, sr.nsync, sr.ns, sr.fs) == (385, 1, N_SAMPLES, FS)
    assert sr.rl == pytest.approx(DURATION)
    np.testing.assert_allclose(sr.sample2volts[:384], raw_sample2volts(probe.layout), rtol=1e-6)
    # ibl-neuropixel's geometry: x within the shank (no shank offset), in channel order
    g = sr.geometry
    np.testing.assert_array_equal(g['x'], geo['x'] - 250 * geo['shank'])
    np.testing.assert_array_equal(g['y'], geo['y'])
    np.testing.assert_array_equal(g['shank'], geo['shank'])
    np.testing.assert_array_equal(g['row'], geo['row'])
    np.testing.assert_array_equal(g['col'], geo['col'])
    # the default reader sorts the channels by shank, row and column: same sites, reordered
    srs = spikeglx.Reader(probe.raw_path)
    order = srs.raw_channel_order[:384]
    np.testing.assert_array_equal(srs.geometry['x'], geo['x'][order] - 250 * geo['shank'][order])
    np.testing.assert_array_equal(srs.geometry['y'], geo['y'][order])
    np.testing.assert_array_equal(srs[1000:1010], sr[1000:1010][:, srs.raw_channel_order])
    # the sync channel holds no pulses; the meta-data hash is the one of the uncompressed data
    assert not np.any(sr.read_sync_digital(slice(0, N_SAMPLES)))
    with open(probe.raw_path.with_suffix('.ch')) as f:
        import json

        assert sr.meta['fileSHA1'].lower() == json.load(f)['sha1_uncompressed']
    assert sr.meta['fileSizeBytes'] == N_SAMPLES * 385 * 2


def test_spikeinterface_reader(probe):
    from spikeinterface.extractors import read_cbin_ibl

    rec = read_cbin_ibl(probe.raw_path.parent)
    assert rec.get_num_channels() == 384 and rec.get_sampling_frequency() == FS
    assert rec.get_num_samples() == N_SAMPLES and rec.get_total_duration() == pytest.approx(DURATION)
    np.testing.assert_allclose(rec.get_channel_gains(), raw_sample2volts(probe.layout) * 1e6, rtol=1e-6)
    assert read_cbin_ibl(probe.raw_path.parent, load_sync_channel=True).get_num_channels() == 385
    pi = rec.get_probe()
    assert pi.annotations['part_number'] == RAW_FORMATS[probe.layout]['pn']
    geo = probe_geometry(probe.layout)
    xy = rec.get_channel_locations()
    # probeinterface places the sites in SpikeGLX's frame (x from the left edge site, y from the
    # lowest site); IBL's (localCoordinates, probe_geometry) has y from 20 um and NP1's x mirrored.
    if probe.layout == 'NP1':
        assert pi.shank_ids is None or len(set(pi.shank_ids)) == 1
        np.testing.assert_array_equal(59 - xy[:, 0], geo['x'])
    else:
        np.testing.assert_array_equal(pi.shank_ids.astype(int), geo['shank'])
        np.testing.assert_array_equal(xy[:, 0] + 27, geo['x'])  # shank offsets of 250 um in both
    np.testing.assert_array_equal(xy[:, 1] + 20, geo['y'])
    # the same traces as ibl-neuropixel's reader
    tr = rec.get_traces(start_frame=20000, end_frame=20100, return_in_uV=True)
    np.testing.assert_allclose(tr, _ibl_reader(probe)[20000:20100][:, :384] * 1e6, rtol=1e-5, atol=1e-3)


def _alf_templates(raw_cache, probe):
    """clusters.waveforms and waveformsChannels of the probe's default sorting, as ONE loads them."""
    from one.api import ONE

    s = probe.default_sorting
    one = ONE(cache_dir=raw_cache.cache_dir, mode='local')
    clusters = one.load_object(probe.eid, 'clusters', collection=s.collection, revision=s.revision or None,
                               attribute=['waveforms', 'waveformsChannels', 'amps'])
    spikes = one.load_object(probe.eid, 'spikes', collection=s.collection, revision=s.revision or None,
                             attribute=['samples', 'clusters', 'amps'])
    np.testing.assert_array_equal(spikes['samples'], s.spikes['samples'])  # the raw follows this sorting
    return spikes, clusters


def test_spikes_average_to_the_alf_template(raw_cache, probe):
    spikes, clusters = _alf_templates(raw_cache, probe)
    samples, clu = spikes['samples'].astype(np.int64), spikes['clusters'].astype(np.int64)
    counts = np.bincount(clu, minlength=clusters['amps'].size)
    unit = int(np.argmax(np.where(counts >= 3, clusters['amps'], -np.inf)))  # the largest unit with spikes
    wfc = clusters['waveformsChannels'][unit]
    # the unit's spikes without another unit's spike overlapping on its channels
    near = np.abs(samples[None, clu == unit] - samples[:, None]) < 82
    shared = np.array([np.isin(clusters['waveformsChannels'][c], wfc).any() for c in clu])
    overlapped = ((near & shared[:, None]) & (clu != unit)[:, None]).any(axis=0)
    idx = np.flatnonzero(clu == unit)[~overlapped]
    assert idx.size >= 3
    sr = _ibl_reader(probe)
    snippets = np.stack([sr[s - 42:s + 40][:, wfc] for s in samples[idx]]) * 1e6  # uV, (spikes, 82, 32)
    scale = spikes['amps'][idx] / clusters['amps'][unit]
    template = clusters['waveforms'][unit].astype(np.float64) * 1e6 * scale.mean()
    sigma = _noise_v(probe.layout) * 1e6 / np.sqrt(idx.size)  # noise std of the average, uV
    assert np.abs(template).max() > 30 * sigma  # a meaningful comparison
    residual = snippets.mean(axis=0) - template
    np.testing.assert_allclose(snippets.mean(axis=0), template, rtol=0, atol=6 * sigma)
    assert np.sqrt(np.mean(residual ** 2)) < 1.1 * sigma  # nothing but the averaged noise is left
    # trough of the template at sample 42, on spikes.samples
    assert np.unravel_index(np.argmin(snippets.mean(axis=0)), template.shape)[0] in (41, 42, 43)


def test_noise_level_on_spike_free_data(probe):
    s = probe.default_sorting
    sp, cl = s.spikes, s.clusters
    n = 2 * int(FS)
    hit = np.zeros((n, 384), dtype=bool)  # samples and channels reached by any template
    t = sp['samples'][:, None] + np.arange(82)[None, :] - 42
    ch = cl['waveformsChannels'][sp['clusters'].astype(np.int64)]
    ok = (t >= 0) & (t < n)
    rows = np.broadcast_to(t[:, :, None], (*t.shape, 32))[ok]
    cols = np.broadcast_to(ch[:, None, :], (t.shape[0], 82, 32))[ok]
    hit[rows, cols] = True
    data = _ibl_reader(probe)[:n][:, :384]
    free = data[~hit]
    assert free.size > 0.5 * hit.size
    assert free.std() == pytest.approx(_noise_v(probe.layout), rel=0.01)
    assert abs(free.mean()) < 0.01 * RAW_NOISE_UV * 1e-6
    assert free.std() * 1e6 == pytest.approx(RAW_NOISE_UV, rel=0.02)


def test_spike_times_follow_the_probe_clock(raw_cache):
    session = raw_cache.sessions[0]
    clocks = set()
    for p in raw_cache.probes:
        assert 1e-6 < abs(p.clock_drift) < 5e-5 and 0.005 < p.clock_offset < 0.2
        clocks.add((p.clock_drift, p.clock_offset))
        for s in p.sortings:  # every sorting of the probe, revisioned or not, on disk
            folder = session.path / s.collection / (f'#{s.revision}#' if s.revision else '')
            times, samples = np.load(folder / 'spikes.times.npy'), np.load(folder / 'spikes.samples.npy')
            np.testing.assert_array_equal(times, s.spikes['times'])
            assert times.dtype == np.float64 and np.all(np.diff(times) >= 0)
            assert np.abs(times - samples / FS).min() > 1e-3  # not the sample clock
            slope, intercept = np.polyfit(samples.astype(np.float64), times, 1)
            np.testing.assert_allclose(times, slope * samples + intercept, rtol=0, atol=1e-9)  # affine
            assert slope * FS - 1 == pytest.approx(p.clock_drift, rel=1e-3, abs=1e-9)
            assert intercept == pytest.approx(p.clock_offset, abs=1e-7)
    assert len(clocks) == len(raw_cache.probes)  # one clock per probe


def test_alf_data_do_not_depend_on_raw(raw_cache, tmp_path):
    plain = write_cache(tmp_path, seed=11, sessions=1, n_units=12, duration=DURATION)
    assert all(p.raw_path is None for p in plain.probes)
    for a, b in zip(raw_cache.probes, plain.probes):
        assert a.pid == b.pid
        for sa, sb in zip(a.sortings, b.sortings):
            np.testing.assert_array_equal(sa.spikes['times'], sb.spikes['times'])
            np.testing.assert_array_equal(sa.clusters['waveforms'], sb.clusters['waveforms'])


def test_cli_synth_raw(tmp_path):
    from alfnwb.cli import main

    assert main(['--quiet', 'synth', '--cache-dir', str(tmp_path), '--units', '6', '--duration', '1', '--raw']) == 0
    assert len(list(tmp_path.rglob('raw_ephys_data/probe0*/*.ap.cbin'))) == 2
