"""Realistic synthetic IBL sessions, written as a standard ONE local cache.

The cache holds ALF files at ``lab/Subjects/subject/date/number/...`` and the ``sessions.pqt``,
``datasets.pqt`` (md5 hashes, sizes, ``default_revision``) and ``insertions.pqt`` tables, so that a
plain ``ONE(cache_dir=DIR, mode='local')`` loads it and a local-mode ``OneAlyx`` resolves pids. For
insertions whose histology lives in Alyx (levels ``resolved``, ``aligned``, ``traced``), the Alyx
insertion and trajectory records are written to ONE's REST response cache (``DIR/.rest``), which a
local-mode ``OneAlyx`` answers from.

Sessions cycle through three templates, so that every loading path has data:

====== ======== ======= ========= =====================================================================
tmpl   probe    layout  histology spike sorting collections
====== ======== ======= ========= =====================================================================
0      probe00  NP1     alf       iblsorter (``#2024-05-06#`` default + an older unrevisioned run),
                                  pykilosort, Kilosort 2.5 (``alf/probe00``)
0      probe01  NP2.4   none      pykilosort
1      probe00  NP1     resolved  iblsorter ``#2024-05-06#``
1      probe01  NP1     traced    pykilosort
2      probe00  NP1     aligned   pykilosort
2      probe01  NP2.4   alf       iblsorter ``#2024-05-06#``
====== ======== ======= ========= =====================================================================

Ids (eid, pid, dataset ids, cluster uuids) are UUIDs derived from the seed, so a given seed always
gives the same cache. The ground truth of each probe is returned as :class:`SynthProbe`.

As in real IBL data, ``spikes.times`` is the probe's sample clock synchronised to the session's main
clock: ``times = samples / FS * (1 + drift) + offset``, with a drift of a few ppm and an offset of
tens of ms per probe (:attr:`SynthProbe.clock_drift`, :attr:`SynthProbe.clock_offset`), so
``times != samples / FS``.

With ``raw=True``, :func:`write_cache` also writes every probe's raw AP band, consistent with the
probe's default spike sorting (templates placed at ``spikes.samples``, scaled by ``spikes.amps``,
plus Gaussian noise of :data:`RAW_NOISE_UV`), as IBL lays it out:
``raw_ephys_data/probeXX/_spikeglx_ephysData_g0_t0.imecK.ap.{cbin,ch,meta}`` (``mtscomp``
compressed int16, 384 AP channels and 1 sync channel, a SpikeGLX ``.meta`` with the real
Neuropixels gains: :data:`RAW_FORMATS`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ['write_cache', 'SynthCache', 'SynthSession', 'SynthProbe', 'SynthSorting', 'SUBJECTS', 'probe_geometry',
           'RAW_NOISE_UV', 'RAW_FORMATS', 'raw_sample2volts', 'raw_file_name']

NAMESPACE = uuid.UUID('6a0c1c74-4f0e-4d59-a9ae-3d33c6a3c2e5')
FS = 30000.0
TIP_UM = 200.0  # distance from the probe tip to the first site (as brainbox's TIP_SIZE_UM)
REVISION = '2024-05-06'
ALIGNMENT_KEY = '2024-02-01T10:00:00_alfnwb'
TRAJECTORY_PROVENANCE = 'Ephys aligned histology track'

#: Standard deviation of the Gaussian noise of the synthetic raw AP band, uV (on every AP channel).
RAW_NOISE_UV = 10.0
#: Per-probe clock against the session's main clock: |drift| in ppm and offset in s (uniform ranges).
CLOCK_DRIFT_PPM = (2.0, 12.0)
CLOCK_OFFSET_S = (0.01, 0.09)
#: SpikeGLX AP band digitisation of the layouts: volts = counts * range_max / max_int / gain.
#: ``type``: ``imDatPrb_type``; ``pn``: ``imDatPrb_pn`` (3B2 NP1 probes, NP2.0 four-shank prototype);
#: ``ref_channel``: the on-shank reference site (drawn with flag 0 in ``snsShankMap``).
RAW_FORMATS = {
    'NP1': {'type': 0, 'pn': 'PRB_1_4_0480_1', 'gain': 500, 'range_max': 0.6, 'max_int': 512, 'ref_channel': 191},
    'NP2.4': {'type': 24, 'pn': 'NP2010', 'gain': 80, 'range_max': 0.62, 'max_int': 8192, 'ref_channel': 127},
}
RAW_CHUNK = 30000  # samples synthesised at once (and mtscomp chunk: 1 s)

# Real Brain Wide Map lab/subject name styles: underscores, hyphens, lower case, digits.
SUBJECTS = [
    ('cortexlab', 'KS023'),
    ('angelakilab', 'NYU-11'),
    ('churchlandlab', 'CSHL045'),
    ('wittenlab', 'ibl_witten_13'),
    ('hoferlab', 'SWC_043'),
    ('mainenlab', 'ZFM-01576'),
    ('zadorlab', 'CSH_ZAD_011'),
    ('danlab', 'DY_008'),
    ('churchlandlab_ucla', 'MFD_05'),
    ('steinmetzlab', 'NR_0017'),
]

# Region tracks from the probe tip upwards: (Allen acronym, thickness in um).
TRACKS = {
    'thalamus': [('VPM', 900), ('PO', 500), ('LP', 700), ('DG-po', 120), ('DG-sg', 80), ('DG-mo', 200),
                 ('CA1', 250), ('VISa6b', 60), ('VISa6a', 260), ('VISa5', 260), ('VISa4', 110),
                 ('VISa2/3', 250), ('VISa1', 110), ('void', 10000)],
    'striatum': [('ACB', 900), ('CP', 1300), ('ccb', 150), ('MOs6b', 50), ('MOs6a', 400), ('MOs5', 400),
                 ('MOs2/3', 350), ('MOs1', 120), ('void', 10000)],
    'visual': [('DG-mo', 200), ('DG-sg', 80), ('CA1', 250), ('VISp6b', 40), ('VISp6a', 250), ('VISp5', 200),
               ('VISp4', 100), ('VISp2/3', 200), ('VISp1', 100), ('void', 10000)],
}

# (probe name, layout, histology level, track, [(sorter, revision, default)]), one list per template
TEMPLATES = [
    [('probe00', 'NP1', 'alf', 'thalamus',
      [('iblsorter', REVISION, True), ('iblsorter', '', False), ('pykilosort', '', True), ('', '', True)]),
     ('probe01', 'NP2.4', 'none', 'visual', [('pykilosort', '', True)])],
    [('probe00', 'NP1', 'resolved', 'thalamus', [('iblsorter', REVISION, True)]),
     ('probe01', 'NP1', 'traced', 'striatum', [('pykilosort', '', True)])],
    [('probe00', 'NP1', 'aligned', 'striatum', [('pykilosort', '', True)]),
     ('probe01', 'NP2.4', 'alf', 'visual', [('iblsorter', REVISION, True)])],
]


@dataclass
class SynthSorting:
    """Ground truth of one spike sorting run, as written to its ALF collection."""

    sorter: str
    revision: str
    collection: str
    default: bool
    spikes: dict
    clusters: dict


@dataclass
class SynthProbe:
    """Ground truth of one synthetic insertion."""

    pid: str
    eid: str
    name: str
    layout: str
    histology: str
    channels: dict  # localCoordinates, rawInd, shank, mlapdv (um), atlas_id
    sortings: list = field(default_factory=list)
    clock_drift: float = 0.0  # spikes.times = spikes.samples / FS * (1 + clock_drift) + clock_offset
    clock_offset: float = 0.0  # s
    raw_path: Path | None = None  # the raw AP band .ap.cbin (with .ch and .meta beside), when written

    @property
    def default_sorting(self) -> SynthSorting:
        """The sorting a loader picks by default: default revision, iblsorter > pykilosort > Kilosort 2.5."""
        rank = {'iblsorter': 0, 'pykilosort': 1, '': 2}
        defaults = [s for s in self.sortings if s.default]
        return min(defaults, key=lambda s: rank.get(s.sorter, 3))


@dataclass
class SynthSession:
    """Ground truth of one synthetic session."""

    eid: str
    lab: str
    subject: str
    date: datetime.date
    number: int
    path: Path
    probes: list = field(default_factory=list)


@dataclass
class SynthCache:
    """What :func:`write_cache` wrote."""

    cache_dir: Path
    sessions: list

    @property
    def probes(self) -> list:
        """All insertions of all sessions."""
        return [p for s in self.sessions for p in s.probes]

    @property
    def pids(self) -> list:
        return [p.pid for p in self.probes]

    @property
    def eids(self) -> list:
        return [s.eid for s in self.sessions]

    def probe(self, histology: str | None = None, layout: str | None = None) -> SynthProbe:
        """First insertion matching a histology level and/or layout."""
        for p in self.probes:
            if (histology is None or p.histology == histology) and (layout is None or p.layout == layout):
                return p
        raise KeyError(f'no synthetic insertion with histology={histology} layout={layout}')


def _uuid(*parts) -> str:
    # version-4 layout (what Alyx issues and ONE accepts), derived from the parts: stable per seed
    digest = hashlib.sha256(NAMESPACE.bytes + '/'.join(map(str, parts)).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def probe_geometry(layout: str) -> dict:
    """Site geometry of the dense Neuropixels layouts IBL records with.

    Parameters
    ----------
    layout : {'NP1', 'NP2.4'}
        NP1: 384 sites in a checkerboard of 4 columns, 20 um rows (3A, 3B, 1.0). NP2.4: four shanks
        250 um apart, 96 sites each in 2 columns 32 um apart with 15 um rows, as in a SpikeGLX
        ``imroTbl`` of type 24 recording the bottom bank of every shank.

    Returns
    -------
    dict
        ``x``, ``y`` (um on the probe; ``x`` includes the shank offset), ``shank``, ``row``, ``col``.
    """
    from neuropixel import trace_header

    if layout == 'NP1':
        h = trace_header(version=1)
    elif layout == 'NP2.4':
        h = trace_header(version=2.4, nshank=4)
    else:
        raise ValueError(f'unknown probe layout {layout!r}: NP1 or NP2.4')
    shank = np.asarray(h['shank']).astype(int)
    row, col = np.asarray(h['row']).astype(int), np.asarray(h['col']).astype(int)
    x = np.asarray(h['x'], dtype=float) + 250.0 * shank
    y = np.asarray(h['y'], dtype=float)
    return {'x': x.astype(float), 'y': y.astype(float), 'shank': shank, 'row': row, 'col': col}


def _track(entry_ml: float, entry_ap: float, tip_dv: float, tilt_deg: float):
    """Tip position (um from bregma) and unit vectors up the probe and across it."""
    t = np.deg2rad(tilt_deg)
    up = np.array([-np.sin(t), 0.0, np.cos(t)])  # towards the surface, tilted in ML
    across = np.array([np.cos(t), 0.0, np.sin(t)])
    tip = np.array([entry_ml, entry_ap, tip_dv])
    return tip, up, across


def _regions_along(track: str, dist_um: np.ndarray) -> np.ndarray:
    """Allen ids of the regions at a distance from the tip along a track template."""
    from iblatlas.regions import BrainRegions

    regions = BrainRegions()
    acronyms, thick = zip(*TRACKS[track])
    edges = np.cumsum(thick)
    idx = np.searchsorted(edges, dist_um, side='right')
    ids = np.array([regions.acronym2id(a)[0] for a in acronyms])
    return ids[np.minimum(idx, len(ids) - 1)]


def _channels(layout: str, track: str, histology: str, rng: np.random.Generator) -> dict:
    geom = probe_geometry(layout)
    tip, up, across = _track(entry_ml=-rng.uniform(1200, 2600), entry_ap=-rng.uniform(1500, 3000),
                             tip_dv=-rng.uniform(3900, 4300), tilt_deg=15.0)
    axial = geom['y'] + TIP_UM
    mlapdv = tip + axial[:, None] * up + geom['x'][:, None] * across
    return {
        'localCoordinates': np.c_[geom['x'], geom['y']].astype(np.float64),
        'rawInd': np.arange(384, dtype=np.int64),
        'shank': geom['shank'],
        'mlapdv': mlapdv.astype(np.float64),
        'atlas_id': _regions_along(track, axial),
        '_tip': tip, '_up': up, '_across': across,
    }


def _spike_trains(n_units: int, duration: float, rng: np.random.Generator):
    """Poisson trains with a 2 ms dead time, for all units at once (no loop over units)."""
    rates = np.clip(rng.lognormal(np.log(4.0), 1.0, n_units), 0.3, 60.0)
    silent = rng.choice(n_units, size=min(2, n_units), replace=False)  # clusters with zero spikes
    rates[silent] = 0
    dead = 0.002
    n_draw = np.ceil(rates * duration * 1.3 + 5 * np.sqrt(rates * duration + 1)).astype(int)
    n_draw[silent] = 0
    unit = np.repeat(np.arange(n_units), n_draw)
    scale = np.where(rates > 0, 1 / np.maximum(rates, 1e-9) - dead, 1.0)
    isi = dead + rng.exponential(np.maximum(scale[unit], 1e-4))
    csum = np.cumsum(isi)
    starts = np.r_[0, np.cumsum(n_draw)[:-1]]
    offset = np.repeat(np.r_[0, csum][starts], n_draw)
    t = csum - offset + rng.uniform(0, 0.05, n_units)[unit]
    keep = t < duration - 0.01
    samples = np.round(t[keep] * FS).astype(np.int64)
    unit = unit[keep]
    order = np.lexsort((unit, samples))
    return samples[order], unit[order]


def _templates(peak: np.ndarray, amps_v: np.ndarray, channels: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Templates (V, float32, n_clusters x 82 x 32) on the 32 nearest sites of the peak's shank."""
    xy = channels['localCoordinates']
    shank = channels['shank']
    n = peak.size
    d = np.hypot(xy[:, 0][None, :] - xy[peak, 0][:, None], xy[:, 1][None, :] - xy[peak, 1][:, None])
    d[shank[None, :] != shank[peak][:, None]] = np.inf
    wf_channels = np.sort(np.argsort(d, axis=1, kind='stable')[:, :32], axis=1)
    dist = np.take_along_axis(d, wf_channels, axis=1)
    t = np.arange(82) / FS * 1e3 - 1.4  # ms, trough at sample 42
    width = rng.uniform(0.12, 0.3, n)[:, None]
    shape = -np.exp(-0.5 * (t[None, :] / width) ** 2) + 0.35 * np.exp(-0.5 * ((t[None, :] - 0.5) / (2 * width)) ** 2)
    wf = amps_v[:, None, None] * shape[:, :, None] * np.exp(-dist / 40.0)[:, None, :]
    return wf.astype(np.float32), wf_channels.astype(np.int64)


def _rng(*parts) -> np.random.Generator:
    """A generator seeded from the parts only: draws that leave every other random stream untouched."""
    return np.random.default_rng(uuid.UUID(_uuid('rng', *parts)).int)


def _clock(pid: str) -> tuple[float, float]:
    """Drift (a few ppm, either sign) and offset (s) of a probe's clock against the session's clock."""
    rng = _rng(pid, 'clock')
    drift = rng.choice([-1.0, 1.0]) * rng.uniform(*CLOCK_DRIFT_PPM) * 1e-6
    return float(drift), float(rng.uniform(*CLOCK_OFFSET_S))


def _sorting(channels: dict, n_units: int, duration: float, rng: np.random.Generator, pid: str, tag: str,
             clock: tuple[float, float] = (0.0, 0.0)):
    from brainbox.metrics.single_units import quick_unit_metrics

    samples, clu = _spike_trains(n_units, duration, rng)
    # the probe's sample clock synchronised to the session's main clock, as IBL's spikes.times
    drift, offset = clock
    times = samples / FS * (1.0 + drift) + offset
    n_ch = channels['rawInd'].size
    peak = np.sort(rng.choice(n_ch, n_units, replace=n_units > n_ch))
    unit_amp = np.clip(rng.lognormal(np.log(90e-6), 0.5, n_units), 20e-6, 800e-6)
    depths_c = channels['localCoordinates'][peak, 1]
    amps = unit_amp[clu] * rng.lognormal(0.0, 0.15, clu.size)
    depths = (depths_c[clu] + rng.normal(0, 6.0, clu.size)).astype(np.float32)
    spikes = {
        'times': times,
        'samples': samples,
        'clusters': clu.astype(np.uint32),
        'amps': amps,
        'depths': depths,
        'templates': clu.astype(np.uint32),
    }
    waveforms, wf_channels = _templates(peak, unit_amp, channels, rng)
    # the cluster metrics exactly as IBL's pipeline computes them (ephys_tasks.CellQCMixin)
    metrics = pd.DataFrame(quick_unit_metrics(clu, times, amps, depths.astype(np.float64),
                                              cluster_ids=np.arange(n_units)))
    metrics['ks2_label'] = np.where(rng.uniform(size=n_units) < 0.4, 'good', 'mua')
    uuids = [_uuid(pid, tag, 'cluster', i) for i in range(n_units)]
    clusters = {
        'channels': peak.astype(np.int64),
        'depths': depths_c.astype(np.float64),
        'amps': unit_amp,
        'uuids': pd.DataFrame({'uuids': uuids}),
        'metrics': metrics,
        'waveforms': waveforms,
        'waveformsChannels': wf_channels,
    }
    return spikes, clusters


def _save(folder: Path, obj: str, data: dict, files: list):
    folder.mkdir(parents=True, exist_ok=True)
    for attr, value in data.items():
        if attr.startswith('_'):
            continue
        if isinstance(value, pd.DataFrame):
            if attr == 'uuids':
                path = folder / f'{obj}.{attr}.csv'
                value.to_csv(path, index=False)
            else:
                path = folder / f'{obj}.{attr}.pqt'
                value.to_parquet(path)
        else:
            path = folder / f'{obj}.{attr}.npy'
            np.save(path, np.asarray(value))
        files.append(path)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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


def _spikeglx_meta(layout: str, index: int, n_samples: int, sha1: str, session: SynthSession, serial: str,
                   geometry: dict, rng: np.random.Generator) -> str:
    """A SpikeGLX ``.ap.meta`` of a 3B (NP1) or NP2.0 four-shank (NP2.4) recording of 384 + 1 channels.

    The channel map (``~snsShankMap``) and read-out table (``~imroTbl``) are computed from the
    layout's geometry in channel order, so that ibl-neuropixel and probeinterface read it back.
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
    start = datetime.datetime.combine(session.date, datetime.time(10, 0)) + datetime.timedelta(
        seconds=int(rng.integers(0, 4 * 3600)))
    stem = raw_file_name(index, 'bin')
    acq = (f'D:/iblrig_data/Subjects/{session.subject}/{session.date.isoformat()}/{session.number:03d}/'
           f'raw_ephys_data/_spikeglx_ephysData_g0/_spikeglx_ephysData_g0_imec{index}/{stem}')
    fields = {
        'acqApLfSy': f'{nc},{nc if np1 else 0},1',
        'appVersion': '20190327' if np1 else '20201103',
        'fileCreateTime': start.isoformat(timespec='seconds'),
        'fileName': acq,
        'fileSHA1': sha1.upper(),
        'fileSizeBytes': str(n_samples * (nc + 1) * 2),
        'fileTimeSecs': repr(n_samples / FS),
        'firstSample': str(int(rng.integers(1_000_000, 200_000_000))),
        'gateMode': 'Immediate',
        'imAiRangeMax': str(fmt['range_max']),
        'imAiRangeMin': str(-fmt['range_max']),
        'imCalibrated': 'true',
        'imDatApi': '1.15' if np1 else '3.31',
        'imDatBs_fw': '1.1.128' if np1 else '2.0.137',
        'imDatBsc_fw': '1.0.151' if np1 else '3.2.176',
        'imDatBsc_hw': '1.9',
        'imDatBsc_pn': 'NP2_QBSC_00',
        'imDatBsc_sn': '41' if np1 else '118',
        'imDatFx_hw': '1.2' if np1 else '1.8',
        'imDatFx_pn': 'NP2_FLEX_0' if np1 else 'NPM_FLEX_0',
        'imDatHs_fw': '5.1' if np1 else '2.9',
        'imDatHs_pn': 'NP2_HS_30' if np1 else 'NPM_HS_30',
        'imDatHs_sn': str(300 + index) if np1 else str(20431600 + index),
        **({} if np1 else {'imDatPrb_dock': '1'}),
        'imDatPrb_pn': fmt['pn'],
        'imDatPrb_port': str(index + 1),
        'imDatPrb_slot': '3' if np1 else '2',
        'imDatPrb_sn': str(serial),
        'imDatPrb_type': str(fmt['type']),
        'imLEDEnable': 'false',
        'imMaxInt': str(fmt['max_int']),
        'imRoFile': '' if np1 else 'C:/SpikeGLX/Release_v20201103-phase30/IMRO_Tables/NPtype24_hStripe_botRow0_ref0.imro',
        'imSampRate': f'{FS:g}',
        'imStdby': '',
        'imTrgRising': 'true',
        'imTrgSource': '0',
        **({} if np1 else {'nDataDirs': '1'}),
        'nSavedChans': str(nc + 1),
        'snsApLfSy': f'{nc},0,1',
        'snsSaveChanSubset': f'0:{nc - 1},{sync_index}' if np1 else f'0:{nc}',
        'syncImInputSlot': '3' if np1 else '2',
        'syncSourceIdx': '3',
        'syncSourcePeriod': '1',
        'trigMode': 'Immediate',
        'typeImEnabled': '2',
        'typeNiEnabled': '1',
        'typeThis': 'imec',
        'userNotes': '',
        '~imroTbl': imro,
        '~snsChanMap': chan_map,
        '~snsShankMap': shank_map,
    }
    return ''.join(f'{k}={v}\n' for k, v in fields.items())


def _write_raw(folder: Path, index: int, probe: SynthProbe, session: SynthSession, serial: str,
               n_samples: int) -> list[Path]:
    """Write a probe's raw AP band (``.ap.cbin``, ``.ap.ch``, ``.ap.meta``), consistent with its default sorting."""
    from ._compat import mtscomp_writer

    fmt = RAW_FORMATS[probe.layout]
    s2v = raw_sample2volts(probe.layout)
    geometry = probe_geometry(probe.layout)
    n_channels = geometry['x'].size
    folder.mkdir(parents=True, exist_ok=True)
    bin_file = folder / raw_file_name(index, 'bin')
    cbin_file, ch_file, meta_file = (folder / raw_file_name(index, ext) for ext in ('cbin', 'ch', 'meta'))
    rng = _rng(probe.pid, 'raw')
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


def _xyz_picks(channels: dict) -> list:
    """Histology track picks (um, IBL bregma space) along the probe axis, tip to surface."""
    d = np.linspace(0.0, 4200.0, 12)
    pts = channels['_tip'] + d[:, None] * channels['_up'] + 43.0 * channels['_across']
    return np.round(pts, 3).tolist()


def _rest_records(probe: SynthProbe, channels: dict, session: SynthSession) -> tuple[dict, list]:
    """Alyx insertion and trajectory records for a probe with Alyx-level histology."""
    level = probe.histology
    extended_qc = {
        'tracing_exists': level in ('traced', 'aligned', 'resolved'),
        'alignment_resolved': level == 'resolved',
        'alignment_count': {'resolved': 3, 'aligned': 1}.get(level, 0),
        'alignment_stored': ALIGNMENT_KEY if level in ('aligned', 'resolved') else None,
    }
    insertion = {
        'id': probe.pid, 'name': probe.name, 'session': probe.eid,
        'model': '3B2' if probe.layout == 'NP1' else 'NP2.4', 'serial': '19011110513',
        'json': {'extended_qc': extended_qc} | ({'xyz_picks': _xyz_picks(channels)}
                                                 if extended_qc['tracing_exists'] else {}),
    }
    trajectories = []
    if level in ('aligned', 'resolved'):
        # an identity alignment: feature and track points coincide (m along the track)
        ref = [-0.002, 0.0, 0.002]
        trajectories.append({
            'id': _uuid(probe.pid, 'trajectory'), 'probe_insertion': probe.pid, 'session': session.eid,
            'probe_name': probe.name, 'provenance': TRAJECTORY_PROVENANCE,
            'json': {ALIGNMENT_KEY: [ref, ref]},
        })
    return insertion, trajectories


def _openapi_schema() -> dict:
    """The part of the Alyx OpenAPI schema that ONE needs to answer these requests from its cache."""
    def params(*names):
        return [{'in': 'query', 'name': n, 'schema': {'type': 'string'}} for n in names]

    paths = {
        '/insertions': {'get': {'operationId': 'insertions_list', 'description': 'probe insertions',
                                'parameters': params('session', 'name', 'subject', 'lab', 'model', 'id')}},
        '/insertions/{id}': {'get': {'operationId': 'insertions_read', 'description': 'probe insertion',
                                     'parameters': [{'in': 'path', 'name': 'id', 'required': True,
                                                     'schema': {'type': 'string'}}]}},
        '/trajectories': {'get': {'operationId': 'trajectories_list', 'description': 'trajectories',
                                  'parameters': params('session', 'probe', 'provenance', 'probe_insertion')}},
    }
    return {'openapi': '3.0.3', 'info': {'title': 'Alyx (alfnwb synthetic)', 'version': '3.0'},
            'paths': paths, 'components': {'schemas': {}}}


def write_rest_cache(cache_dir: Path, responses: dict) -> None:
    """Write REST responses into ONE's REST cache (``cache_dir/.rest``), which never expires.

    Parameters
    ----------
    cache_dir : pathlib.Path
        The ONE cache folder.
    responses : dict
        Maps a REST query exactly as ONE sends it (e.g. ``/insertions?session=...&name=probe00``)
        to the JSON response.
    """
    rest = Path(cache_dir) / '.rest'
    rest.mkdir(parents=True, exist_ok=True)
    expiry = datetime.datetime(2100, 1, 1).isoformat()
    for query, response in responses.items():
        name = hashlib.sha1(query.encode('utf-8')).hexdigest()
        (rest / name).write_text(json.dumps([response, expiry]))


def rest_query(endpoint: str, **params) -> str:
    """The REST query string ONE's AlyxClient.rest builds for a list request."""
    from one.webclient import update_url_params

    return '/' + update_url_params(endpoint, {k: str(v) for k, v in params.items()})


def write_cache(cache_dir: str | Path, seed: int = 0, sessions: int = 1, n_units: int = 40,
                duration: float = 300.0, start_date: datetime.date = datetime.date(2023, 3, 14),
                raw: bool = False) -> SynthCache:
    """Write synthetic IBL sessions as a standard ONE local cache.

    Parameters
    ----------
    cache_dir : str or pathlib.Path
        Folder to write to (created if needed). Existing tables are replaced.
    seed : int
        Random seed: ids and data depend only on it and the other arguments.
    sessions : int
        Number of sessions; they cycle through the templates described in the module docstring.
    n_units : int
        Clusters of the default sorting of each probe (other sortings differ by a few).
    duration : float
        Recording length in seconds.
    start_date : datetime.date
        Date of the first session; the next ones follow day by day.
    raw : bool
        Also write each probe's raw AP band, consistent with its default sorting, at
        ``raw_ephys_data/probeXX/_spikeglx_ephysData_g0_t0.imecK.ap.{cbin,ch,meta}`` (int16, 385
        channels at 30 kHz, ``duration * 30000 * 770`` bytes before compression: keep ``duration``
        short). The ALF data do not depend on this flag.

    Returns
    -------
    SynthCache
        The ground truth of everything written.
    """

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng_master = np.random.default_rng(seed)
    ses_rows, dset_rows, ins_rows = [], [], []
    responses = {'/api/schema': _openapi_schema()}
    out = []
    for i in range(sessions):
        lab, subject = SUBJECTS[(seed + i) % len(SUBJECTS)]
        date = start_date + datetime.timedelta(days=i)
        eid = _uuid(seed, 'session', i)
        number = 1
        spath = cache_dir / lab / 'Subjects' / subject / date.isoformat() / f'{number:03d}'
        session = SynthSession(eid=eid, lab=lab, subject=subject, date=date, number=number, path=spath)
        ses_rows.append({'id': eid, 'lab': lab, 'subject': subject, 'date': date, 'number': number,
                         'task_protocol': '_iblrig_tasks_ephysChoiceWorld6.6.2', 'projects': 'ibl_neuropixel_brainwide_01'})
        files: list[tuple[Path, bool]] = []
        for index, (name, layout, histology, track, sortings) in enumerate(TEMPLATES[i % len(TEMPLATES)]):
            pid = _uuid(seed, 'insertion', i, name)
            rng = np.random.default_rng(rng_master.integers(2 ** 32))
            channels = _channels(layout, track, histology, rng)
            drift, offset = _clock(pid)
            probe = SynthProbe(pid=pid, eid=eid, name=name, layout=layout, histology=histology,
                               channels={k: v for k, v in channels.items() if not k.startswith('_')},
                               clock_drift=drift, clock_offset=offset)
            alf_channels = {'localCoordinates': channels['localCoordinates'], 'rawInd': channels['rawInd']}
            if histology == 'alf':
                alf_channels['brainLocationIds_ccf_2017'] = channels['atlas_id']
                alf_channels['mlapdv'] = channels['mlapdv']
            for k, (sorter, revision, default) in enumerate(sortings):
                collection = f'alf/{name}' + (f'/{sorter}' if sorter else '')
                folder = spath / collection / (f'#{revision}#' if revision else '')
                units = max(n_units + (0 if k == 0 else int(rng.integers(-6, 7))), 3)
                spikes, clusters = _sorting(probe.channels, units, duration, rng, pid, f'{sorter}{revision}',
                                            clock=(drift, offset))
                new: list[Path] = []
                _save(folder, 'spikes', spikes, new)
                _save(folder, 'clusters', clusters, new)
                _save(folder, 'channels', alf_channels, new)
                files += [(f, default) for f in new]
                probe.sortings.append(SynthSorting(sorter=sorter, revision=revision, collection=collection,
                                                   default=default, spikes=spikes, clusters=clusters))
            insertion, trajectories = _rest_records(probe, channels, session)
            if raw:
                new = _write_raw(spath / 'raw_ephys_data' / name, index, probe, session, insertion['serial'],
                                 int(round(duration * FS)))
                probe.raw_path = new[0]
                files += [(f, True) for f in new]
            ins_rows.append({'eid': eid, 'id': pid, 'name': name, 'model': insertion['model'],
                             'serial': insertion['serial'], 'json': json.dumps(insertion['json'])})
            responses[rest_query('insertions', session=eid, name=name)] = [insertion]
            responses[f'/insertions/{pid}'] = insertion | {'session_info': {}}
            responses[rest_query('trajectories', session=eid, probe=name,
                                 provenance=TRAJECTORY_PROVENANCE)] = trajectories
            session.probes.append(probe)
        for f, default in files:
            rel = f.relative_to(spath).as_posix()
            dset_rows.append({'eid': eid, 'id': _uuid(eid, rel), 'rel_path': rel, 'file_size': f.stat().st_size,
                              'hash': _md5(f), 'exists': True, 'qc': 'NOT_SET', 'default_revision': default})
        out.append(session)

    write_tables(cache_dir, ses_rows, dset_rows, ins_rows, responses, origin='alfnwb-synthetic')
    return SynthCache(cache_dir=cache_dir, sessions=out)


def write_tables(cache_dir: Path, ses_rows: list, dset_rows: list, ins_rows: list, responses: dict,
                 origin: str) -> None:
    """ONE's cache tables (sessions, datasets, insertions parquet) and its REST cache, from row dicts."""
    from iblutil.io import parquet
    from one.alf.cache import QC_TYPE

    meta = {'date_created': datetime.datetime.now().isoformat(sep=' ', timespec='minutes'),
            'origin': origin, 'min_api_version': '3.0.0'}
    df_ses = pd.DataFrame(ses_rows).astype({'number': np.uint16}).set_index('id').sort_index()
    df_dsets = pd.DataFrame(dset_rows)
    df_dsets['file_size'] = df_dsets['file_size'].astype('UInt64')
    df_dsets['qc'] = df_dsets['qc'].astype(QC_TYPE)
    df_dsets = df_dsets.set_index(['eid', 'id']).sort_index()
    df_ins = pd.DataFrame(ins_rows).set_index(['eid', 'id']).sort_index()
    parquet.save(cache_dir / 'sessions.pqt', df_ses, meta)
    parquet.save(cache_dir / 'datasets.pqt', df_dsets, meta)
    parquet.save(cache_dir / 'insertions.pqt', df_ins, meta)
    write_rest_cache(cache_dir, responses)
