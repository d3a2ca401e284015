"""--raw: waveforms, noise levels and principal components computed from the raw AP band."""

import h5py
import numpy as np
import pytest

from alfnwb.analyzer import RAW_EXTENSIONS, build_analyzer, open_raw_recording
from alfnwb.errors import NotFoundError
from alfnwb.export import export
from alfnwb.loading import load_probe, raw_ap_file
from alfnwb.readback import read_sorting_analyzer


#: Noise levels from 4 random chunks of 500 ms, not SpikeInterface's 20: the synthetic raw band is 3 s long
#: (20 chunks filter 3 times more samples than it has; the default parameters are the same code)
NOISE = {'noise_levels': {'random_slices_kwargs': {'seed': 0, 'num_chunks_per_segment': 4}}}


@pytest.fixture(scope='module')
def raw_export(raw_synth, tmp_path_factory):
    from one.api import One

    one = One(cache_dir=raw_synth.cache_dir, mode='local')
    return export(one, tmp_path_factory.mktemp('rawexport') / 'raw.nwb', eid=raw_synth.sessions[0].eid, raw=True,
                  extension_params=NOISE)


@pytest.mark.parametrize('probe_index', [0, 1])
def test_raw_extensions_read_back(raw_synth, raw_export, probe_index):
    from one.api import One

    from alfnwb.synthetic import RAW_NOISE_UV

    truth = raw_synth.sessions[0].probes[probe_index]
    one = One(cache_dir=raw_synth.cache_dir, mode='local')
    probe = load_probe(one, truth.pid)
    assert raw_ap_file(one, probe) == truth.raw_path
    assert set(RAW_EXTENSIONS) <= set(raw_export.extensions)
    back = read_sorting_analyzer(raw_export.path, probe=truth.name)
    assert set(back.extensions) >= set(RAW_EXTENSIONS)

    # the same analyzer rebuilt now: what was written is what SpikeInterface computed, exactly
    recording = open_raw_recording(truth.raw_path, probe)
    assert recording.get_num_samples() == 90000 and recording.get_num_channels() == 384
    made = build_analyzer(probe, ('waveforms', 'noise_levels', 'principal_components'), recording=recording,
                          extension_params=NOISE)
    assert back.get_total_samples() == 90000
    np.testing.assert_array_equal(back.get_extension('random_spikes').get_data(),
                                  made.get_extension('random_spikes').get_data())
    np.testing.assert_array_equal(back.get_extension('waveforms').get_data(), made.get_extension('waveforms').get_data())
    assert back.get_extension('waveforms').nbefore == made.get_extension('waveforms').nbefore == 30
    np.testing.assert_array_equal(back.get_extension('noise_levels').get_data(),
                                  made.get_extension('noise_levels').get_data())
    np.testing.assert_allclose(back.get_extension('principal_components').get_data(),
                               made.get_extension('principal_components').get_data(), rtol=1e-6, atol=1e-6)

    # noise levels: the synthetic white noise (high-pass filtered: a few % lower), on every channel
    noise = back.get_extension('noise_levels').get_data()
    assert noise.shape == (384,)
    assert abs(np.median(noise) / RAW_NOISE_UV - 1) < 0.06

    # waveforms: their mean on each unit's best channel is the ALF template (the raw was made from it)
    wf = back.get_extension('waveforms')
    templates = back.get_extension('templates')
    counts = np.bincount(back.sorting.to_spike_vector()['unit_index'], minlength=len(back.unit_ids))
    checked = 0
    for unit in back.unit_ids[np.argsort(-counts)][:3]:
        mean = wf.get_waveforms_one_unit(unit, force_dense=True).mean(axis=0)  # (90 samples, 384), uV
        alf = templates.get_unit_template(unit)  # (82 samples, 384), trough at 42
        best = int(np.abs(alf).max(axis=0).argmax())
        a = alf[42 - 20:42 + 40, best]
        m = mean[30 - 20:30 + 40, best]
        assert np.corrcoef(a, m)[0, 1] > 0.95, unit
        assert abs(m.min() / a.min() - 1) < 0.25, unit
        checked += 1
    assert checked == 3

    # principal components: one row per random spike, 5 components on the unit's 32 channels
    pcs = back.get_extension('principal_components').get_data()
    assert pcs.shape == (back.get_extension('random_spikes').get_data().size, 5, 32)


def test_raw_file_layout_and_validity(raw_export):
    from nwbinspector import Importance, inspect_nwbfile

    with h5py.File(raw_export.path, 'r') as f:
        for name, offset in (('probe00', 0), ('probe01', 384)):
            x = f[f'processing/ecephys/{name}/extensions']
            assert {'waveforms', 'noise_levels', 'pca_projections_by_channel'} <= set(x)
            rows = x['waveforms/data'].shape[0]
            assert rows == x['random_spikes/random_spikes_indices'].shape[0] * 32
            el = x['waveforms/electrodes'][:]
            assert el.min() >= offset and el.max() < offset + 384
            assert x['waveforms/data'].dtype == np.float32 and x['waveforms/data'].compression == 'gzip'
            assert x['waveforms/data_index_index'].shape == (f[f'processing/ecephys/{name}/units_region'].shape[0],)
    critical = [m for m in inspect_nwbfile(nwbfile_path=str(raw_export.path))
                if m.importance == Importance.CRITICAL]
    assert not critical, critical


def test_raw_missing_is_a_clear_error(synth, one_plain, tmp_path):
    out = tmp_path / 'x.nwb'
    pid = synth.sessions[0].probes[0].pid
    with pytest.raises(NotFoundError, match=f'insertion {pid}: raw data raw_ephys_data/probe00/'):
        export(one_plain, out, pid=pid, raw=True)
    assert not out.exists() and not list(tmp_path.iterdir())
