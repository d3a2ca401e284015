"""Loading through SpikeSortingLoader: sorter, revision and histology choices, with both kinds of ONE."""

import numpy as np
import pytest

from alfnwb.errors import AtlasRequiredError, HistologyError, NotFoundError, SorterNotFoundError
from alfnwb.loading import available_sortings, load_probe, load_session
from conftest import PAINT


def _truth(probe, collection, revision):
    return next(s for s in probe.sortings if s.collection == collection and s.revision == revision)


@pytest.mark.parametrize('kind', ['one_plain', 'one_alyx'])
def test_default_sorter_and_revision_by_pid(synth, kind, request):
    one = request.getfixturevalue(kind)
    p = synth.sessions[0].probes[0]
    d = load_probe(one, p.pid)
    prov = d.provenance
    assert (prov.eid, prov.probe, prov.spike_sorter, prov.collection, prov.revision, prov.histology) == \
        (p.eid, 'probe00', 'iblsorter', 'alf/probe00/iblsorter', '2024-05-06', 'alf')
    t = _truth(p, 'alf/probe00/iblsorter', '2024-05-06')
    np.testing.assert_array_equal(d.spikes['times'], t.spikes['times'])
    np.testing.assert_array_equal(d.spikes['clusters'], t.spikes['clusters'])
    np.testing.assert_array_equal(d.clusters['uuids'], t.clusters['uuids']['uuids'].to_numpy())
    np.testing.assert_array_equal(d.channels['atlas_id'], p.channels['atlas_id'])
    np.testing.assert_allclose(np.c_[d.channels['x'], d.channels['y'], d.channels['z']] * 1e6, p.channels['mlapdv'])
    np.testing.assert_array_equal(d.channels['rawInd'], np.arange(384))


@pytest.mark.parametrize('sorter,revision,collection,expected_rev', [
    ('pykilosort', None, 'alf/probe00/pykilosort', ''),
    ('kilosort2.5', None, 'alf/probe00', ''),
    ('iblsorter', 'unrevisioned', 'alf/probe00/iblsorter', ''),
    ('iblsorter', '2024-05-06', 'alf/probe00/iblsorter', '2024-05-06'),
])
def test_choose_sorter_and_revision(synth, one_plain, sorter, revision, collection, expected_rev):
    p = synth.sessions[0].probes[0]
    d = load_probe(one_plain, p.pid, spike_sorter=sorter, revision=revision)
    assert (d.provenance.collection, d.provenance.revision) == (collection, expected_rev)
    t = _truth(p, collection, expected_rev)
    np.testing.assert_array_equal(d.spikes['times'], t.spikes['times'])
    assert d.n_clusters == t.clusters['channels'].size


def test_available_sortings(synth, one_plain):
    s = synth.sessions[0]
    assert available_sortings(one_plain, s.eid, 'probe00') == {
        'kilosort2.5': [''], 'iblsorter': ['', '2024-05-06'], 'pykilosort': ['']}


def test_missing_sorter_or_revision_lists_what_exists(synth, one_plain):
    p = synth.sessions[0].probes[0]
    with pytest.raises(SorterNotFoundError, match=r"insertion .*'ks4' not found.*iblsorter: unrevisioned, 2024-05-06"):
        load_probe(one_plain, p.pid, spike_sorter='ks4')
    with pytest.raises(SorterNotFoundError, match=r"revision '2030-01-01' of pykilosort not found"):
        load_probe(one_plain, p.pid, spike_sorter='pykilosort', revision='2030-01-01')
    with pytest.raises(SorterNotFoundError, match='no unrevisioned'):
        load_probe(one_plain, synth.sessions[1].probes[0].pid, revision='unrevisioned')


def test_pykilosort_only_np24_without_histology(synth, one_plain):
    p = synth.sessions[0].probes[1]
    d = load_probe(one_plain, p.pid)
    assert (d.provenance.spike_sorter, d.provenance.histology) == ('pykilosort', 'none')
    assert 'atlas_id' not in d.channels
    np.testing.assert_array_equal(d.channels['shank'], p.channels['shank'])
    with pytest.raises(HistologyError, match=f'insertion {p.pid}: histology level is .none.'):
        load_probe(one_plain, p.pid, min_histology='traced')


def test_by_eid_and_probe_name(synth, one_plain):
    s = synth.sessions[0]
    session = load_session(one_plain, s.eid)
    assert [p.provenance.probe for p in session.probes] == ['probe00', 'probe01']
    assert (session.subject, session.lab, session.date) == (s.subject, s.lab, s.date)
    only = load_session(one_plain, s.eid, probe='probe01')
    assert [p.provenance.pid for p in only.probes] == [s.probes[1].pid]
    with pytest.raises(NotFoundError, match='no probe named .probe07.'):
        load_session(one_plain, s.eid, probe='probe07')


def test_unknown_ids(one_plain, one_alyx):
    for one in (one_plain, one_alyx):
        with pytest.raises(NotFoundError, match='insertion 00000000-0000-4000-8000-000000000000: not found'):
            load_probe(one, '00000000-0000-4000-8000-000000000000')
    with pytest.raises(NotFoundError, match='session 00000000-0000-4000-8000-000000000000'):
        load_session(one_plain, '00000000-0000-4000-8000-000000000000')


def _expected_positions(probe):
    """Where brainbox puts channels from the track picks: on the probe axis, 43 um across."""
    from alfnwb.synthetic import probe_geometry

    ch = probe.channels
    lateral = probe_geometry(probe.layout)['x']
    t = np.deg2rad(15.0)
    across = np.array([np.cos(t), 0.0, np.sin(t)])
    return ch['mlapdv'] - (lateral - 43.0)[:, None] * across


@pytest.mark.parametrize('level', ['resolved', 'aligned', 'traced'])
def test_alyx_histology_levels_from_rest_cache(synth, one_alyx, painted_atlas, level):
    from iblatlas.regions import BrainRegions

    p = synth.probe(histology=level)
    d = load_probe(one_alyx, p.pid, atlas=painted_atlas, min_histology='traced')
    assert d.provenance.histology == level
    xyz = np.c_[d.channels['x'], d.channels['y'], d.channels['z']] * 1e6
    expected = _expected_positions(p)
    np.testing.assert_allclose(xyz, expected, atol=0.01)
    upper, lower, dv = PAINT
    r = BrainRegions()
    far = np.abs(expected[:, 2] - dv) > 30  # away from the painted boundary (25 um voxels)
    want = np.where(expected[:, 2] >= dv, r.acronym2id(upper)[0], r.acronym2id(lower)[0])
    np.testing.assert_array_equal(np.asarray(d.channels['atlas_id'])[far], want[far])
    assert far.sum() > 300
    np.testing.assert_array_equal(d.channels['rawInd'], np.arange(384))


def test_alyx_histology_without_atlas_is_a_clear_error(synth, one_alyx):
    p = synth.probe(histology='traced')
    with pytest.raises(AtlasRequiredError, match=f'insertion {p.pid}: .*Allen annotation volume'):
        load_probe(one_alyx, p.pid)


def test_plain_one_has_no_alyx_histology(synth, one_plain):
    p = synth.probe(histology='resolved')
    d = load_probe(one_plain, p.pid)
    assert d.provenance.histology == 'none'
    with pytest.raises(HistologyError, match='below the required .resolved.'):
        load_probe(one_plain, p.pid, min_histology='resolved')


def test_never_creates_an_allen_atlas(monkeypatch, synth, one_alyx):
    import iblatlas.atlas

    def forbidden(*args, **kwargs):
        raise AssertionError('AllenAtlas() instantiated implicitly')

    monkeypatch.setattr(iblatlas.atlas.AllenAtlas, '__init__', forbidden)
    d = load_probe(one_alyx, synth.sessions[0].probes[0].pid)
    assert d.provenance.histology == 'alf'


def test_inconsistent_alf_is_a_one_line_error(tmp_path):
    from one.api import One

    from alfnwb.errors import InvalidDataError
    from alfnwb.export import export
    from alfnwb.synthetic import write_cache

    cache = write_cache(tmp_path / 'c', seed=11, sessions=1, n_units=5, duration=20)
    one = One(cache_dir=cache.cache_dir, mode='local')
    s = cache.sessions[0]
    p1 = s.probes[1]
    f = s.path / 'alf/probe01/pykilosort/spikes.times.npy'
    np.save(f, np.load(f)[::-1].copy())
    with pytest.raises(InvalidDataError, match=f'insertion {p1.pid}: alf/probe01/pykilosort/spikes.times is not sorted'):
        load_probe(one, p1.pid)
    f = s.path / 'alf/probe00/iblsorter/#2024-05-06#/channels.brainLocationIds_ccf_2017.npy'
    ids = np.load(f)
    ids[3] = 123456789
    np.save(f, ids)
    with pytest.raises(InvalidDataError, match=f'insertion {s.probes[0].pid}: .*atlas ids unknown.*123456789'):
        export(one, tmp_path / 'x.nwb', pid=s.probes[0].pid)
    assert not (tmp_path / 'x.nwb').exists()
