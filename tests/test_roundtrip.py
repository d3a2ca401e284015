"""read_alf rebuilds from the NWB file alone exactly what the loader returned."""

import numpy as np
import pytest

from alfnwb.errors import NWBReadError
from alfnwb.export import export
from alfnwb.loading import load_probe
from alfnwb.readback import info, read_alf


def _assert_roundtrip(path, probe_data):
    spikes, clusters, channels = read_alf(path, probe=probe_data.provenance.probe)
    sp, cl, ch = probe_data.spikes, probe_data.clusters, probe_data.channels
    for key in ('times', 'clusters', 'amps', 'depths'):
        np.testing.assert_array_equal(spikes[key], sp[key], err_msg=key)
        assert spikes[key].dtype == sp[key].dtype or key == 'clusters'
    np.testing.assert_array_equal(clusters['channels'], cl['channels'])
    np.testing.assert_array_equal(clusters['depths'], cl['depths'])
    np.testing.assert_array_equal(clusters['uuids'], cl['uuids'])
    for col in ('label', 'amp_median', 'slidingRP_viol', 'firing_rate', 'ks2_label'):
        np.testing.assert_array_equal(clusters['metrics'][col].to_numpy(), cl['metrics'][col].to_numpy())
    np.testing.assert_allclose(clusters['waveforms'], cl['waveforms'], rtol=1e-6)
    np.testing.assert_array_equal(np.sort(clusters['waveformsChannels'], axis=1), np.sort(cl['waveformsChannels'], axis=1))
    for key in ('axial_um', 'lateral_um', 'rawInd', 'shank'):
        np.testing.assert_array_equal(channels[key], ch[key], err_msg=key)
    if probe_data.provenance.histology != 'none':
        for key in ('x', 'y', 'z'):
            np.testing.assert_allclose(channels[key], ch[key], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(channels['atlas_id'], ch['atlas_id'])
        assert list(channels['acronym']) == list(ch['acronym'])
    else:
        assert 'atlas_id' not in channels


def test_session_roundtrip_both_probes(synth, one_plain, session_export):
    for p in synth.sessions[0].probes:
        _assert_roundtrip(session_export.path, load_probe(one_plain, p.pid))


@pytest.mark.parametrize('sorter,revision', [('kilosort2.5', None), ('iblsorter', 'unrevisioned')])
def test_roundtrip_other_sortings(synth, one_plain, tmp_path, sorter, revision):
    p = synth.sessions[0].probes[0]
    out = export(one_plain, tmp_path / 'x.nwb', pid=p.pid, spike_sorter=sorter, revision=revision)
    _assert_roundtrip(out.path, load_probe(one_plain, p.pid, spike_sorter=sorter, revision=revision))


def test_roundtrip_alyx_histology_np24_alf(synth, one_alyx, painted_atlas, tmp_path):
    s = synth.sessions[2]  # probe00 aligned (Alyx), probe01 NP2.4 with alf histology
    out = export(one_alyx, tmp_path / 's2.nwb', eid=s.eid, atlas=painted_atlas)
    for p in s.probes:
        _assert_roundtrip(out.path, load_probe(one_alyx, p.pid, atlas=painted_atlas))
    summary = info(out.path)
    assert [(p['probe'], p['histology'], p['spike_sorter']) for p in summary['probes']] == [
        ('probe00', 'aligned', 'pykilosort'), ('probe01', 'alf', 'iblsorter')]


def test_read_alf_errors(session_export, tmp_path):
    with pytest.raises(NWBReadError, match='holds probes probe00, probe01'):
        read_alf(session_export.path)
    with pytest.raises(NWBReadError, match="no probe 'probe09'"):
        read_alf(session_export.path, probe='probe09')
    bad = tmp_path / 'bad.nwb'
    bad.write_bytes(b'not hdf5')
    with pytest.raises(NWBReadError, match='not a readable NWB'):
        read_alf(bad, probe='probe00')


@pytest.mark.parametrize('compression', [None, 'lzf'])
def test_roundtrip_compression_choices(synth, one_plain, tmp_path, compression):
    """Both write paths (in-memory arrays when uncompressed, block-gathered when compressed), two probes."""
    import h5py

    s = synth.sessions[0]
    out = export(one_plain, tmp_path / 'c.nwb', eid=s.eid, compression=compression, extensions='spike_amplitudes')
    for p in s.probes:
        _assert_roundtrip(out.path, load_probe(one_plain, p.pid))
    with h5py.File(out.path, 'r') as f:
        assert f['units/spike_times'].compression == compression
        assert f['processing/ecephys/probe01/extensions/spike_amplitudes/data'].compression == compression
