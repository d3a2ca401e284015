"""The NWB file: electrodes, units, localization, metadata, validity, atomic writes."""

import gc
import os

import numpy as np
import pytest

from alfnwb.errors import MetadataError, OutputError
from alfnwb.export import export


@pytest.fixture(scope='module')
def nwb(session_export):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(session_export.path), 'r')
    yield io.read()
    io.close()


def test_electrodes_table(nwb, synth):
    from iblatlas.atlas import AllenAtlas
    from iblatlas.regions import BrainRegions

    s = synth.sessions[0]
    el = nwb.electrodes.to_dataframe()
    assert len(el) == 768
    p0, p1 = s.probes
    a = el[el.probe_name == 'probe00']
    r = BrainRegions()
    np.testing.assert_array_equal(a['atlas_id'], p0.channels['atlas_id'])
    assert list(a['location']) == list(r.id2acronym(p0.channels['atlas_id']))
    assert list(a['beryl_acronym']) == list(r.id2acronym(p0.channels['atlas_id'], mapping='Beryl'))
    assert list(a['cosmos_acronym']) == list(r.id2acronym(p0.channels['atlas_id'], mapping='Cosmos'))
    np.testing.assert_allclose(np.c_[a.ibl_ml, a.ibl_ap, a.ibl_dv], p0.channels['mlapdv'])
    # CCF in NWB axes (AP, DV, ML), checked against iblatlas's own transform
    ccf = AllenAtlas(mock=True).xyz2ccf(p0.channels['mlapdv'] / 1e6, ccf_order='apdvml', mode='wrap')
    np.testing.assert_allclose(np.c_[a.x, a.y, a.z], ccf, atol=1e-6)
    np.testing.assert_array_equal(a['rel_x'], p0.channels['localCoordinates'][:, 0])
    np.testing.assert_array_equal(a['rel_y'], p0.channels['localCoordinates'][:, 1])
    np.testing.assert_array_equal(a['channel_index'], np.arange(384))
    np.testing.assert_array_equal(a['raw_channel_index'], p0.channels['rawInd'])
    assert set(a['histology']) == {'alf'} and set(a['group_name']) == {'probe00'}
    # NP2.4 without histology: a group per shank, location unknown
    b = el[el.probe_name == 'probe01']
    assert set(b['location']) == {'unknown'} and (b['atlas_id'] == -1).all() and b['x'].isna().all()
    np.testing.assert_array_equal(b['shank'], p1.channels['shank'])
    assert list(b['group_name']) == [f'probe01_shank{k}' for k in p1.channels['shank']]
    assert sorted(nwb.electrode_groups) == ['probe00', 'probe01_shank0', 'probe01_shank1', 'probe01_shank2',
                                            'probe01_shank3']
    assert sorted(nwb.devices) == ['probe00', 'probe01']


def test_anatomical_localization(nwb, synth):
    loc = nwb.lab_meta_data['localization']
    assert loc.spaces['AllenCCFv3'].orientation == 'PIR'
    assert (loc.spaces['IBLBregma'].orientation, loc.spaces['IBLBregma'].origin) == ('RAS', 'bregma')
    t = loc.anatomical_coordinates_tables['IBLBregmaCoordinates'].to_dataframe(index=True)
    assert len(t) == 384  # only the probe with histology
    np.testing.assert_allclose(np.c_[t.x, t.y, t.z], synth.sessions[0].probes[0].channels['mlapdv'])
    c = loc.anatomical_coordinates_tables['AllenCCFv3Coordinates']
    np.testing.assert_array_equal(c['localized_entity'].data[:], np.arange(384))
    np.testing.assert_allclose(c['x'].data[:], nwb.electrodes['x'].data[:384])


def test_units_table(nwb, synth):
    s = synth.sessions[0]
    units = nwb.units
    probe_name = np.asarray(units['probe_name'][:])
    cluster_id = np.asarray(units['cluster_id'][:])
    assert len(set(units.id[:])) == len(units.id[:])
    assert units.resolution == pytest.approx(1 / 30000)
    for p, sorting in ((s.probes[0], s.probes[0].sortings[0]), (s.probes[1], s.probes[1].sortings[0])):
        sp, cl = sorting.spikes, sorting.clusters
        rows = np.flatnonzero(probe_name == p.name)
        offset = 0 if p.name == 'probe00' else 384
        assert len(rows) == cl['channels'].size  # clusters without spikes included
        np.testing.assert_array_equal(cluster_id[rows], np.arange(rows.size))
        for row, c in zip(rows, cluster_id[rows]):
            expected = sp['times'][sp['clusters'] == c]
            got = units['spike_times'][row]
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, expected)  # exact, in time order
            np.testing.assert_array_equal(units['spike_amplitudes'][row], sp['amps'][sp['clusters'] == c])
            samples = units['spike_samples'][row]  # in the ALF dtype, though the export held them as int32
            assert samples.dtype == sp['samples'].dtype == np.int64
            np.testing.assert_array_equal(samples, sp['samples'][sp['clusters'] == c])
            el = units['electrodes'][row].index.to_numpy()
            assert el[0] == cl['channels'][c] + offset  # peak channel first
            assert set(el) == set(cl['waveformsChannels'][c] + offset)
            assert units['peak_channel'][row] == cl['channels'][c] + offset
            k = list(cl['waveformsChannels'][c]).index(cl['channels'][c])
            np.testing.assert_allclose(units['waveform_mean'][row][:, 0], cl['waveforms'][c][:, k] * 1e6, rtol=1e-6)
        assert list(units['cluster_uuid'][rows]) == list(cl['uuids']['uuids'])
        np.testing.assert_array_equal(units['depth'][rows], cl['depths'])
        np.testing.assert_array_equal(units['label'][rows], cl['metrics']['label'])
        assert list(units['ks2_label'][rows]) == list(cl['metrics']['ks2_label'])
        assert (np.diff([len(units['spike_times'][r]) for r in rows]) != 0).any()
        assert any(len(units['spike_times'][r]) == 0 for r in rows)
    assert 'V' in units['amp_median'].description and units.waveform_unit == 'microvolts'
    loc0 = np.asarray(units['location'][:])[probe_name == 'probe00']
    from iblatlas.regions import BrainRegions
    peak = s.probes[0].sortings[0].clusters['channels']
    assert list(loc0) == list(BrainRegions().id2acronym(s.probes[0].channels['atlas_id'][peak]))


def test_the_export_holds_samples_and_clusters_narrower(session_export, synth):
    """An export holds spikes.samples as int32 and spikes.clusters as uint16 (the same values: the file,
    test_units_table, and to_dict keep the ALF dtypes)."""
    for probe, ref in zip(session_export.session.probes, synth.sessions[0].probes):
        sp = ref.sortings[0].spikes
        assert (probe.spikes['samples'].dtype, probe.spikes['clusters'].dtype) == (np.int32, np.uint16)
        assert (probe.alf_dtype('samples'), probe.alf_dtype('clusters')) == (sp['samples'].dtype, sp['clusters'].dtype)
        back = probe.to_dict()['spikes']
        for key in ('samples', 'clusters'):
            assert back[key].dtype == sp[key].dtype
            np.testing.assert_array_equal(back[key], sp[key])


def test_an_export_holding_its_spike_columns_on_disk_writes_the_same_file(synth, one_plain, tmp_path, session_export,
                                                                          monkeypatch):
    """A large probe's spikes.times, amps and depths are held in anonymous files through the build and the
    write (grouped by unit, read a block at a time: ProbeData.hold_on_disk). With every probe held so, the
    file's every dataset equals the in-memory export's; the columns stay readable through the result, and no
    file is left in the folder."""
    import h5py

    from alfnwb import export as export_module
    from alfnwb.model import DiskColumn

    at_write = []
    real = export_module._build_and_write

    def spy(session, *args, **kwargs):
        at_write.append([type(p.spikes[k]) for p in session.probes for k in ('times', 'amps', 'depths')])
        return real(session, *args, **kwargs)

    def whole(self, index):
        raise AssertionError('a DiskColumn read whole to gather rows')

    monkeypatch.setattr(export_module, 'ON_DISK_MIN_BYTES', 0)
    monkeypatch.setattr(export_module, '_build_and_write', spy)
    monkeypatch.setattr(DiskColumn, '__getitem__', whole)  # the writers read the files block by block
    result = export(one_plain, tmp_path / 'on_disk.nwb', eid=synth.sessions[0].eid)
    assert at_write == [[DiskColumn] * 6]
    assert sorted(os.listdir(tmp_path)) == ['on_disk.nwb']  # the columns' files have no name
    for probe, ref in zip(result.session.probes, synth.sessions[0].probes):
        for key in ('times', 'amps', 'depths'):
            np.testing.assert_array_equal(np.asarray(probe.spikes[key]), ref.sortings[0].spikes[key])
            np.testing.assert_array_equal(probe.to_dict()['spikes'][key], ref.sortings[0].spikes[key])
    names = []
    with h5py.File(session_export.path, 'r') as a, h5py.File(result.path, 'r') as b:
        a.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert {'units/spike_times', 'units/spike_amplitudes', 'units/spike_depths',
                'processing/ecephys/probe01/extensions/spike_locations/data'} <= set(names)
        for name in names:
            if name in ('file_create_date', 'identifier') or name.startswith('specifications'):
                continue
            x, y = a[name][()], b[name][()]
            if isinstance(x, np.ndarray) and x.dtype.kind == 'O':
                assert [str(v) for v in x.ravel()] == [str(v) for v in y.ravel()], name
            else:
                np.testing.assert_array_equal(x, y, err_msg=name)


def test_a_spike_column_that_cannot_go_to_disk_is_a_one_line_error(synth, one_plain, tmp_path, monkeypatch):
    """A full disk as a large probe's columns go to their files: one line naming the insertion and the
    dataset, nothing left in the folder."""
    from alfnwb import export as export_module
    from alfnwb.model import DiskColumn

    def full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(export_module, 'ON_DISK_MIN_BYTES', 0)
    monkeypatch.setattr(DiskColumn, 'write', full)
    pid = synth.sessions[0].probes[0].pid
    with pytest.raises(OutputError, match=f'^insertion {pid}: cannot hold spikes.times on disk in .*'
                                          'No space left on device') as e:
        export(one_plain, tmp_path / 'x.nwb', pid=pid)
    assert '\n' not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_session_metadata_and_provenance(nwb, synth):
    s = synth.sessions[0]
    assert nwb.session_id == s.eid and nwb.subject.subject_id == s.subject and nwb.lab == s.lab
    assert nwb.session_start_time.tzinfo is not None
    assert nwb.session_start_time.date() == s.date
    prov = nwb.processing['ecephys']['alfnwb_provenance'].to_dataframe()
    assert list(prov.probe_name) == ['probe00', 'probe01']
    assert list(prov.collection) == ['alf/probe00/iblsorter', 'alf/probe01/pykilosort']
    assert list(prov.revision) == ['2024-05-06', ''] and list(prov.histology) == ['alf', 'none']
    assert list(prov.pid) == [p.pid for p in s.probes]


def test_validation_finds_what_pynwb_finds(session_export, tmp_path):
    """alfnwb validates against the loaded namespaces (no re-parsing of the cached schema), in one walk
    over the union of the extensions' types: pynwb's messages, without its repeats (it walks the file
    once per extension, so an error in a core type comes once from each)."""
    import shutil

    import h5py
    from pynwb import validate as pynwb_validate

    from alfnwb.nwb.io import validate

    bad = tmp_path / 'bad.nwb'
    shutil.copy(session_export.path, bad)
    with h5py.File(bad, 'r+') as f:
        del f['session_description']  # required by the NWBFile type (core)
        del f['processing/ecephys/probe00/extensions/templates'].attrs['peak_sample_index']  # ndx-spikesorting
        del f['general/localization/AllenCCFv3Coordinates'].attrs['method']  # ndx-anatomical-localization
    ours = validate(bad)
    theirs = [str(e) for e in pynwb_validate(path=str(bad), use_cached_namespaces=True)]
    assert sorted(set(ours)) == sorted(set(theirs)) and len(ours) == len(set(ours)) == 3
    assert theirs.count(next(e for e in ours if 'session_description' in e)) == 2
    for what in ('session_description', 'peak_sample_index', 'AllenCCFv3Coordinates'):
        assert sum(what in e for e in ours) == 1, (what, ours)


def test_file_passes_nwbinspector_and_pynwb_validation(session_export):
    from nwbinspector import Importance, inspect_nwbfile

    from alfnwb.nwb.io import validate

    assert validate(session_export.path) == []
    serious = [m for m in inspect_nwbfile(nwbfile_path=str(session_export.path))
               if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]
    # the only accepted exception: 'unknown' (no histology) and 'void' (outside the brain) locations
    for m in serious:
        assert m.check_function_name == 'check_electrodes_location_allen_ccf', m
        assert "'unknown'" in m.message or "'void'" in m.message, m.message
    assert len(serious) <= 2


def test_identifier_is_deterministic(synth, one_plain, tmp_path, session_export, nwb):
    out = export(one_plain, tmp_path / 'again.nwb', eid=synth.sessions[0].eid)
    from pynwb import NWBHDF5IO
    with NWBHDF5IO(str(out.path), 'r') as io:
        assert io.read().identifier == nwb.identifier


def test_non_default_revision_and_metadata_file(synth, one_plain, tmp_path):
    from pynwb import NWBHDF5IO

    meta = tmp_path / 'meta.yaml'
    meta.write_text('NWBFile:\n  experimenter: ["Doe, Jane"]\n  session_start_time: "2023-03-14T13:45:00"\n'
                    '  timezone: America/New_York\nSubject:\n  sex: F\n  age: P120D\n')
    p = synth.sessions[0].probes[0]
    out = export(one_plain, tmp_path / 'rev.nwb', pid=p.pid, spike_sorter='iblsorter', revision='unrevisioned',
                 metadata=meta)
    with NWBHDF5IO(str(out.path), 'r') as io:
        f = io.read()
        assert f.experimenter == ('Doe, Jane',)
        assert f.session_start_time.isoformat() == '2023-03-14T13:45:00-04:00'
        assert (f.subject.sex, f.subject.age) == ('F', 'P120D')
        prov = f.processing['ecephys']['alfnwb_provenance'].to_dataframe()
        assert list(prov.revision) == [''] and list(prov.collection) == ['alf/probe00/iblsorter']
        truth = next(s for s in p.sortings if s.collection == 'alf/probe00/iblsorter' and s.revision == '')
        assert len(f.units) == truth.clusters['channels'].size


@pytest.mark.parametrize('text,match', [
    ('NWBFile:\n  experimentr: x\n', 'unknown key NWBFile.experimentr'),
    ('Subject:\n  age: 12\n', 'Subject.age must be a string'),
    ('Subjects: {}\n', 'unknown section'),
    ('NWBFile:\n  timezone: Mars/Olympus\n', 'unknown timezone'),
    ('!!python/object/apply:os.system ["echo hacked"]\n', 'not valid YAML'),
])
def test_bad_metadata_is_a_one_line_error(synth, one_plain, tmp_path, text, match):
    meta = tmp_path / 'meta.yaml'
    meta.write_text(text)
    with pytest.raises(MetadataError, match=match) as e:
        export(one_plain, tmp_path / 'm.nwb', pid=synth.pids[0], metadata=meta)
    assert '\n' not in str(e.value)
    assert os.listdir(tmp_path) == ['meta.yaml']


def test_failed_write_leaves_nothing(synth, one_plain, tmp_path, monkeypatch):
    import alfnwb.nwb.io as nio

    def broken(path):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(nio, 'validate', broken)
    with pytest.raises(OutputError, match='write failed: no space left on device'):
        export(one_plain, tmp_path / 'x.nwb', pid=synth.pids[1])
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(synth, one_plain, tmp_path):
    out = tmp_path / 'x.nwb'
    out.write_bytes(b'previous')
    with pytest.raises(OutputError, match='exists'):
        export(one_plain, out, pid=synth.pids[1])
    assert out.read_bytes() == b'previous'
    with pytest.raises(OutputError, match='must end in .nwb'):
        export(one_plain, tmp_path / 'x.h5', pid=synth.pids[1])


def test_an_export_frees_its_arrays_without_waiting_for_the_garbage_collector(synth, one_plain, tmp_path,
                                                                              monkeypatch):
    """ONE's AlfBunch objects and the NWBFile's containers are reference cycles holding the loaded arrays.
    With the automatic collector off (a batch worker collects its oldest generation after tens of jobs),
    the arrays an export replaced (the wider samples and clusters) are freed as the probe narrows them, and
    the others once the result is dropped: nothing piles up from job to job."""
    import weakref

    from alfnwb import loading
    from alfnwb.export import export

    loaded = []
    real = loading._load_spike_sorting

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        loaded.extend(weakref.ref(out[0][k]) for k in ('samples', 'clusters', 'times'))
        return out

    from alfnwb import export as export_module

    at_build = []
    real_build = export_module.build_analyzers

    def build(*args, **kwargs):  # once loaded: the ALF int64 samples / uint32 clusters, replaced, are freed
        at_build.append([r() is None for r in loaded[:2]])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(loading, '_load_spike_sorting', spy)
    monkeypatch.setattr(export_module, 'build_analyzers', build)
    gc.collect()
    gc.disable()
    try:
        result = export(one_plain, tmp_path / 'a.nwb', pid=synth.sessions[0].probes[0].pid)
        samples, clusters, times = loaded
        assert at_build == [[True, True]]
        assert times() is result.session.probes[0].spikes['times']
        held = [weakref.ref(v) for v in result.session.probes[0].spikes.values()]
        del result
        assert times() is None and all(r() is None for r in held)
    finally:
        gc.enable()
