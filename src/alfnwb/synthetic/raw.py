"""The raw AP band of a synthetic probe: mtscomp ``.cbin``/``.ch`` and a SpikeGLX ``.meta``."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import numpy as np

from .alf import FS, probe_geometry
from .ids import stable_rng
from .truth import SynthProbe, SynthSession, SynthSorting

#: Standard deviation of the Gaussian noise of the synthetic raw AP band, uV (on every AP channel).
RAW_NOISE_UV = 10.0
#: SpikeGLX AP band digitisation of the layouts: volts = counts * range_max / max_int / gain.
#: ``type``: ``imDatPrb_type``; ``pn``: ``imDatPrb_pn`` (3B2 NP1 probes, NP2.0 four-shank prototype);
#: ``ref_channel``: the on-shank reference site (drawn with flag 0 in ``snsShankMap``).
RAW_FORMATS = {
    'NP1': {'type': 0, 'pn': 'PRB_1_4_0480_1', 'gain': 500, 'range_max': 0.6, 'max_int': 512, 'ref_channel': 191},
    'NP2.4': {'type': 24, 'pn': 'NP2010', 'gain': 80, 'range_max': 0.62, 'max_int': 8192, 'ref_channel': 127},
}
RAW_CHUNK = int(FS)  # samples synthesised at once (and mtscomp chunk: 1 s)

# SpikeGLX .meta entries of the two acquisition systems (3B with SpikeGLX 20190327, NP2.0 with
# 20201103) that depend on the layout only; _META_HS_SN: headstage serial, plus the probe's index.
_META_SYSTEM = {
    'NP1': {'appVersion': '20190327', 'imDatApi': '1.15', 'imDatBs_fw': '1.1.128', 'imDatBsc_fw': '1.0.151',
            'imDatBsc_sn': '41', 'imDatFx_hw': '1.2', 'imDatFx_pn': 'NP2_FLEX_0', 'imDatHs_fw': '5.1',
            'imDatHs_pn': 'NP2_HS_30', 'imDatPrb_slot': '3', 'imRoFile': '', 'syncImInputSlot': '3'},
    'NP2.4': {'appVersion': '20201103', 'imDatApi': '3.31', 'imDatBs_fw': '2.0.137', 'imDatBsc_fw': '3.2.176',
              'imDatBsc_sn': '118', 'imDatFx_hw': '1.8', 'imDatFx_pn': 'NPM_FLEX_0', 'imDatHs_fw': '2.9',
              'imDatHs_pn': 'NPM_HS_30', 'imDatPrb_dock': '1', 'imDatPrb_slot': '2',
              'imRoFile': 'C:/SpikeGLX/Release_v20201103-phase30/IMRO_Tables/NPtype24_hStripe_botRow0_ref0.imro',
              'nDataDirs': '1', 'syncImInputSlot': '2'},
}
_META_HS_SN = {'NP1': 300, 'NP2.4': 20431600}
# ... and the entries common to both
_META_COMMON = {
    'gateMode': 'Immediate', 'imCalibrated': 'true', 'imDatBsc_hw': '1.9', 'imDatBsc_pn': 'NP2_QBSC_00',
    'imLEDEnable': 'false', 'imStdby': '', 'imTrgRising': 'true', 'imTrgSource': '0', 'syncSourceIdx': '3',
    'syncSourcePeriod': '1', 'trigMode': 'Immediate', 'typeImEnabled': '2', 'typeNiEnabled': '1',
    'typeThis': 'imec', 'userNotes': '',
}


def raw_sample2volts(layout: str) -> float:
    """Volts per int16 count of the raw AP band of a layout (``imAiRangeMax / imMaxInt / gain``)."""
    f = RAW_FORMATS[layout]
    return f['range_max'] / f['max_int'] / f['gain']


def raw_file_name(index: int, ext: str = 'cbin') -> str:
    """IBL's name of the raw AP band of the probe at ``index`` (0 for probe00): ``..imec0.ap.cbin``."""
    return f'_spikeglx_ephysData_g0_t0.imec{index}.ap.{ext}'


def _raw_chunks(sorting: SynthSorting, n_channels: int, n_samples: int, s2v: float, max_int: int,
                rng: np.random.Generator, chunk: int = RAW_CHUNK):
    """Raw AP band (int16, n x (n_channels + 1 sync channel)), one time chunk at a time.

    Every spike adds its unit's template (V, on the unit's ``waveformsChannels``) scaled by
    ``spikes.amps / clusters.amps``, with the template's trough (sample 42) on ``spikes.samples``.
    Vectorised: all spikes touching a chunk are summed by one ``np.bincount`` on flat indices.
    """
    spikes, clusters = sorting.spikes, sorting.clusters
    samples = np.asarray(spikes['samples'], dtype=np.int64)
    clu = np.asarray(spikes['clusters'], dtype=np.int64)
    waveforms = np.asarray(clusters['waveforms'], dtype=np.float64) / s2v  # counts
    wf_channels = np.asarray(clusters['waveformsChannels'], dtype=np.int64)
    scale = np.asarray(spikes['amps'], dtype=np.float64) / np.asarray(clusters['amps'], dtype=np.float64)[clu]
    lags = np.arange(waveforms.shape[1]) - 42
    noise = RAW_NOISE_UV * 1e-6 / s2v  # counts
    for c0 in range(0, n_samples, chunk):
        n = min(chunk, n_samples - c0)
        # spikes whose template window [s - 42, s + 39] overlaps the chunk [c0, c0 + n)
        i0, i1 = np.searchsorted(samples, [c0 - lags[-1], c0 + n - lags[0]])
        t = samples[i0:i1, None] + lags[None, :] - c0  # (spikes, 82) sample in the chunk
        flat = t[:, :, None] * n_channels + wf_channels[clu[i0:i1]][:, None, :]  # (spikes, 82, 32)
        values = waveforms[clu[i0:i1]] * scale[i0:i1, None, None]
        inside = np.broadcast_to(((t >= 0) & (t < n))[:, :, None], flat.shape)
        signal = np.bincount(flat[inside], weights=values[inside], minlength=n * n_channels)
        traces = rng.standard_normal((n, n_channels), dtype=np.float32)
        traces *= noise
        traces += signal.reshape(n, n_channels)
        np.rint(traces, out=traces)
        np.clip(traces, -max_int, max_int - 1, out=traces)  # the ADC's range
        out = np.zeros((n, n_channels + 1), dtype=np.int16)  # last: the sync channel (no sync pulses)
        out[:, :n_channels] = traces
        yield out


def _site_tables(layout: str, geometry: dict) -> tuple[dict, int]:
    """SpikeGLX's ``~imroTbl``, ``~snsChanMap`` and ``~snsShankMap`` of a layout, and the sync channel's index.

    Computed from the layout's geometry in channel order, so that ibl-neuropixel and probeinterface
    read them back as :func:`~alfnwb.synthetic.probe_geometry`.
    """
    fmt = RAW_FORMATS[layout]
    nc = geometry['x'].size
    np1 = layout == 'NP1'
    row, shank = geometry['row'].astype(int), geometry['shank'].astype(int)
    # SpikeGLX site column (0, 1): IBL's NP1 columns 0-3 are its mirrored, staggered version
    col = (2 + row % 2 - geometry['col'].astype(int)) // 2 if np1 else geometry['col'].astype(int)
    electrode = 2 * row + col  # on the shank
    bank = electrode // 384
    if np1:
        assert np.array_equal(electrode, np.arange(nc)), 'NP1: channel i reads electrode i (bank 0)'
        imro = f'(0,{nc})' + ''.join(f'({c} {b} 0 {fmt["gain"]} 250 1)' for c, b in zip(range(nc), bank))
        n_shanks, n_cols, n_rows = 1, 2, 480
        sync_index = 2 * nc  # the 3B AP + LF + SY acquisition order
    else:
        imro = f'({fmt["type"]},{nc})' + ''.join(f'({c} {s} {b} 0 {e})' for c, s, b, e in
                                                  zip(range(nc), shank, bank, electrode))
        n_shanks, n_cols, n_rows = 4, 2, 640
        sync_index = nc
    order = np.empty(nc, dtype=int)  # SpikeGLX display order: by shank, then electrode
    order[np.lexsort((electrode, shank))] = np.arange(nc)
    chan_map = (f'({nc},{nc if np1 else 0},1)' + ''.join(f'(AP{c};{c}:{o})' for c, o in enumerate(order))
                + f'(SY0;{sync_index}:{sync_index})')
    flags = (np.arange(nc) != fmt['ref_channel']).astype(int)
    shank_map = f'({n_shanks},{n_cols},{n_rows})' + ''.join(
        f'({s}:{c}:{r}:{f})' for s, c, r, f in zip(shank, col, row, flags))
    return {'~imroTbl': imro, '~snsChanMap': chan_map, '~snsShankMap': shank_map}, sync_index


def _spikeglx_meta(layout: str, index: int, n_samples: int, sha1: str, session: SynthSession, serial: str,
                   geometry: dict, rng: np.random.Generator) -> str:
    """A SpikeGLX ``.ap.meta`` of a 3B (NP1) or NP2.0 four-shank (NP2.4) recording of 384 + 1 channels."""
    fmt = RAW_FORMATS[layout]
    nc = geometry['x'].size
    np1 = layout == 'NP1'
    site_tables, sync_index = _site_tables(layout, geometry)
    start = datetime.datetime.combine(session.date, datetime.time(10, 0)) + datetime.timedelta(
        seconds=int(rng.integers(0, 4 * 3600)))
    stem = raw_file_name(index, 'bin')
    acq = (f'D:/iblrig_data/Subjects/{session.subject}/{session.date.isoformat()}/{session.number:03d}/'
           f'raw_ephys_data/_spikeglx_ephysData_g0/_spikeglx_ephysData_g0_imec{index}/{stem}')
    fields = {
        **_META_COMMON,
        **_META_SYSTEM[layout],
        **site_tables,
        'acqApLfSy': f'{nc},{nc if np1 else 0},1',
        'fileCreateTime': start.isoformat(timespec='seconds'),
        'fileName': acq,
        'fileSHA1': sha1.upper(),
        'fileSizeBytes': str(n_samples * (nc + 1) * 2),
        'fileTimeSecs': repr(n_samples / FS),
        'firstSample': str(int(rng.integers(1_000_000, 200_000_000))),
        'imAiRangeMax': str(fmt['range_max']),
        'imAiRangeMin': str(-fmt['range_max']),
        'imDatHs_sn': str(_META_HS_SN[layout] + index),
        'imDatPrb_pn': fmt['pn'],
        'imDatPrb_port': str(index + 1),
        'imDatPrb_sn': str(serial),
        'imDatPrb_type': str(fmt['type']),
        'imMaxInt': str(fmt['max_int']),
        'imSampRate': f'{FS:g}',
        'nSavedChans': str(nc + 1),
        'snsApLfSy': f'{nc},0,1',
        'snsSaveChanSubset': f'0:{nc - 1},{sync_index}' if np1 else f'0:{nc}',
    }
    # SpikeGLX writes its keys in ASCII order (the ~ tables last)
    return ''.join(f'{k}={v}\n' for k, v in sorted(fields.items()))


def write_raw(folder: Path, index: int, probe: SynthProbe, session: SynthSession, serial: str,
              n_samples: int) -> list[Path]:
    """Write a probe's raw AP band, consistent with its default sorting.

    Parameters
    ----------
    folder : pathlib.Path
        ``raw_ephys_data/probeXX`` of the session (created if needed).
    index : int
        The probe's index in the session (``imecK`` in the file names, headstage port).
    probe : SynthProbe
        The probe, with its sortings (:attr:`SynthProbe.default_sorting` is drawn).
    session : SynthSession
        Its session (date, subject, number: the ``.meta``'s file name and creation time).
    serial : str
        The probe's serial number (``imDatPrb_sn``).
    n_samples : int
        Samples at :data:`~alfnwb.synthetic.FS`.

    Returns
    -------
    list of pathlib.Path
        ``.ap.cbin``, ``.ap.ch``, ``.ap.meta``. The uncompressed ``.ap.bin`` is removed.
    """
    from .._compat import mtscomp_writer

    fmt = RAW_FORMATS[probe.layout]
    s2v = raw_sample2volts(probe.layout)
    geometry = probe_geometry(probe.layout)
    n_channels = geometry['x'].size
    folder.mkdir(parents=True, exist_ok=True)
    bin_file = folder / raw_file_name(index, 'bin')
    cbin_file, ch_file, meta_file = (folder / raw_file_name(index, ext) for ext in ('cbin', 'ch', 'meta'))
    rng = stable_rng(probe.pid, 'raw')
    sha1 = hashlib.sha1()
    try:
        with open(bin_file, 'wb') as fid:
            for chunk in _raw_chunks(probe.default_sorting, n_channels, n_samples, s2v, fmt['max_int'], rng):
                buffer = chunk.tobytes()
                sha1.update(buffer)
                fid.write(buffer)
        # IBL's settings (ibl-neuropixel Reader.compress_file: mtscomp's defaults), but the fastest zlib level
        writer = mtscomp_writer(chunk_duration=RAW_CHUNK / FS, algorithm='zlib', comp_level=1, do_time_diff=True,
                                do_spatial_diff=False, chunk_order='F', check_after_compress=False, quiet=True)
        writer.open(bin_file, sample_rate=FS, n_channels=n_channels + 1, dtype=np.int16)
        try:
            writer.write(cbin_file, ch_file)
        finally:
            writer.close()
    finally:
        bin_file.unlink(missing_ok=True)
    meta_file.write_text(_spikeglx_meta(probe.layout, index, n_samples, sha1.hexdigest(), session, serial,
                                        geometry, rng))
    return [cbin_file, ch_file, meta_file]
