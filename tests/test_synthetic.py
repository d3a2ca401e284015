"""The synthetic cache is a standard ONE cache of realistic IBL data."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from alfnwb.synthetic import SUBJECTS, TIP_UM, probe_geometry, write_cache
from conftest import DATA


def test_tables_are_standard_one_cache(synth, one_plain):
    eids = sorted(map(str, one_plain.search()))
    assert eids == sorted(synth.eids)
    dsets = pd.read_parquet(synth.cache_dir / 'datasets.pqt')
    assert {'rel_path', 'file_size', 'hash', 'exists', 'qc', 'default_revision'} <= set(dsets.columns)
    # every dataset's size and md5 match the file on disk
    ses = {s.eid: s.path for s in synth.sessions}
    for (eid, _), row in dsets.iloc[::7].iterrows():
        f = ses[eid] / row.rel_path
        assert f.stat().st_size == row.file_size
        assert hashlib.md5(f.read_bytes()).hexdigest() == row['hash']
    # exactly one default revision per dataset name and collection
    d = dsets.reset_index()
    d['key'] = d['eid'] + '/' + d['rel_path'].str.replace(r'#[^#]+#/', '', regex=True)
    assert (d.groupby('key')['default_revision'].sum() == 1).all()
    ins = pd.read_parquet(synth.cache_dir / 'insertions.pqt')
    assert sorted(ins.reset_index()['id']) == sorted(synth.pids)


def test_pid2eid_with_local_onealyx(synth, one_alyx):
    for p in synth.probes:
        eid, name = one_alyx.pid2eid(p.pid)
        assert (str(eid), name) == (p.eid, p.name)


def test_same_seed_same_cache(tmp_path):
    a = write_cache(tmp_path / 'a', seed=3, sessions=1, n_units=6, duration=20)
    b = write_cache(tmp_path / 'b', seed=3, sessions=1, n_units=6, duration=20)
    c = write_cache(tmp_path / 'c', seed=4, sessions=1, n_units=6, duration=20)
    assert a.pids == b.pids and a.eids == b.eids and a.pids != c.pids
    np.testing.assert_array_equal(a.probes[0].sortings[0].spikes['times'], b.probes[0].sortings[0].spikes['times'])


def test_sorters_and_revisions_on_disk(synth):
    s0 = synth.sessions[0]
    colls = {(x.collection, x.revision) for x in s0.probes[0].sortings}
    assert colls == {('alf/probe00/iblsorter', '2024-05-06'), ('alf/probe00/iblsorter', ''),
                     ('alf/probe00/pykilosort', ''), ('alf/probe00', '')}
    assert (s0.path / 'alf/probe00/iblsorter/#2024-05-06#/spikes.times.npy').exists()
    assert (s0.path / 'alf/probe00/spikes.times.npy').exists()
    assert not (s0.path / 'alf/probe01/channels.brainLocationIds_ccf_2017.npy').exists()


def test_real_subject_name_styles(synth):
    names = [s for _, s in SUBJECTS]
    assert any('_' in n for n in names) and any('-' in n for n in names) and 'ibl_witten_13' in names
    assert synth.sessions[0].path.parts[-4] == 'Subjects'


def _meta_geometry(name):
    import spikeglx

    path = DATA / 'spikeglx' / name
    g = spikeglx.geometry_from_meta(spikeglx.read_meta_data(path))
    return {(int(s), float(x), float(y)) for s, x, y in zip(g['shank'], g['x'], g['y'])}


def test_np1_geometry_matches_spikeglx_meta():
    geo = probe_geometry('NP1')
    assert _meta_geometry('sample3B_g0_t0.imec1.ap.meta') == {(0, x, y) for x, y in zip(geo['x'], geo['y'])}


def test_np24_geometry_matches_spikeglx_meta():
    geo = probe_geometry('NP2.4')
    ours = {(int(s), float(x - 250 * s), float(y)) for s, x, y in zip(geo['shank'], geo['x'], geo['y'])}
    assert _meta_geometry('sampleNP2.4_4shanks_g0_t0.imec.ap.meta') == ours
    assert np.bincount(geo['shank']).tolist() == [96] * 4


def test_channels_follow_a_straight_track_through_real_regions(synth):
    from iblatlas.regions import BrainRegions

    regions = BrainRegions()
    p = synth.probe(histology='alf', layout='NP1')
    ch = p.channels
    assert np.isin(ch['atlas_id'], regions.id).all()
    assert len(set(regions.id2acronym(ch['atlas_id'])) - {'void'}) >= 8
    # mlapdv is the tip plus the distance along the probe: consistent with depth
    xyz = ch['mlapdv']
    same_col = ch['localCoordinates'][:, 0] == ch['localCoordinates'][0, 0]
    d = np.linalg.norm(np.diff(xyz[same_col], axis=0), axis=1)
    np.testing.assert_allclose(d, np.diff(ch['localCoordinates'][same_col, 1]), rtol=1e-9)
    assert xyz[0, 2] < xyz[-1, 2]  # deeper at the tip
    assert TIP_UM == 200.0


def test_spike_trains_are_realistic(synth):
    from brainbox.metrics.single_units import quick_unit_metrics

    s = synth.probes[0].sortings[0]
    sp, cl = s.spikes, s.clusters
    n = cl['channels'].size
    counts = np.bincount(sp['clusters'], minlength=n)
    assert (counts == 0).sum() >= 1  # clusters without spikes
    assert np.all(np.diff(sp['times']) >= 0)
    order = np.lexsort((sp['times'], sp['clusters']))
    same = np.diff(sp['clusters'][order]) == 0
    assert np.diff(sp['times'][order])[same].min() >= 0.0019  # refractory period
    assert 10e-6 < np.median(sp['amps']) < 500e-6  # volts
    rates = counts[counts > 0] / 90.0
    assert 0.2 < np.median(rates) < 30
    m = pd.DataFrame(quick_unit_metrics(sp['clusters'], sp['times'], sp['amps'], sp['depths'].astype(float),
                                        cluster_ids=np.arange(n)))
    pd.testing.assert_series_equal(m['label'], cl['metrics']['label'])
    assert set(cl['metrics']['ks2_label']) <= {'good', 'mua'}
    assert cl['waveforms'].shape == (n, 82, 32) and cl['waveformsChannels'].shape == (n, 32)
