"""ALF objects of a synthetic probe: site geometry, channels along a track, spike trains, templates,
spike sortings (``spikes``, ``clusters``), and their ALF files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..model import SAMPLING_FREQUENCY
from .ids import stable_rng, stable_uuid

FS = SAMPLING_FREQUENCY  # the synthetic probes' sample clock
TIP_UM = 200.0  # distance from the probe tip to the first site (as brainbox's TIP_SIZE_UM)
#: Per-probe clock against the session's main clock: |drift| in ppm and offset in s (uniform ranges).
CLOCK_DRIFT_PPM = (2.0, 12.0)
CLOCK_OFFSET_S = (0.01, 0.09)

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


def probe_channels(layout: str, track: str, histology: str, rng: np.random.Generator) -> dict:
    """Channels of a probe on a straight, 15 deg-tilted track at a random position.

    Parameters
    ----------
    layout : {'NP1', 'NP2.4'}
        Site layout (:func:`probe_geometry`).
    track : str
        Region track from the tip upwards: a key of :data:`TRACKS`.
    histology : str
        The insertion's histology level (not used by the geometry).
    rng : numpy.random.Generator
        Draws the entry point and tip depth (three uniform draws).

    Returns
    -------
    dict
        ``localCoordinates`` (n x 2, um), ``rawInd``, ``shank``, ``mlapdv`` (n x 3, um from bregma),
        ``atlas_id`` (Allen ids), and the track itself under the private keys ``_tip``, ``_up``,
        ``_across`` (not ALF attributes: :func:`save_alf_object` skips ``_`` keys).
    """
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


def spike_trains(n_units: int, duration: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson trains with a 2 ms dead time, for all units at once (no loop over units).

    Parameters
    ----------
    n_units : int
        Number of units; two of them (or fewer if ``n_units < 2``) fire no spike.
    duration : float
        Recording length, s.
    rng : numpy.random.Generator
        Draws the rates (log-normal around 4 Hz, clipped to 0.3-60 Hz), silent units and intervals.

    Returns
    -------
    samples : numpy.ndarray
        int64 spike samples at :data:`FS`, sorted (ties by unit).
    units : numpy.ndarray
        The unit of each spike (int).
    """
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


def unit_templates(peak: np.ndarray, amps_v: np.ndarray, channels: dict,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Templates on the 32 nearest sites of each unit's peak site, on the peak's shank.

    Parameters
    ----------
    peak : numpy.ndarray
        Peak site of each unit (index into the channels).
    amps_v : numpy.ndarray
        Trough amplitude of each unit, V.
    channels : dict
        ``localCoordinates`` and ``shank`` of the sites (:func:`probe_channels`).
    rng : numpy.random.Generator
        Draws the width of each unit's waveform.

    Returns
    -------
    waveforms : numpy.ndarray
        float32, n_units x 82 samples x 32 sites, V, trough at sample 42.
    waveform_channels : numpy.ndarray
        int64, n_units x 32: the sites, sorted.
    """
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


def probe_clock(pid: str) -> tuple[float, float]:
    """Drift and offset of a probe's clock against the session's clock.

    Parameters
    ----------
    pid : str
        The insertion id: the clock depends on it only (:func:`~alfnwb.synthetic.stable_rng`).

    Returns
    -------
    drift : float
        A few ppm (:data:`CLOCK_DRIFT_PPM`), either sign, as a fraction.
    offset : float
        s (:data:`CLOCK_OFFSET_S`).
    """
    rng = stable_rng(pid, 'clock')
    drift = rng.choice([-1.0, 1.0]) * rng.uniform(*CLOCK_DRIFT_PPM) * 1e-6
    return float(drift), float(rng.uniform(*CLOCK_OFFSET_S))


def unit_placement(channels: dict, n_units: int, clu: np.ndarray, rng: np.random.Generator):
    """Where each unit sits and how large its spikes are.

    Returns
    -------
    peak, unit_amp, depths_c, amps, depths : numpy.ndarray
        Peak channel and amplitude (V) of each unit, its depth (um), then each spike's amplitude (V)
        and depth (um, float32), drawn from ``rng`` in that order.
    """
    n_ch = channels['rawInd'].size
    peak = np.sort(rng.choice(n_ch, n_units, replace=n_units > n_ch))
    unit_amp = np.clip(rng.lognormal(np.log(90e-6), 0.5, n_units), 20e-6, 800e-6)
    depths_c = channels['localCoordinates'][peak, 1]
    amps = unit_amp[clu] * rng.lognormal(0.0, 0.15, clu.size)
    depths = (depths_c[clu] + rng.normal(0, 6.0, clu.size)).astype(np.float32)
    return peak, unit_amp, depths_c, amps, depths


def spike_sorting(channels: dict, n_units: int, duration: float, rng: np.random.Generator, pid: str, tag: str,
                  clock: tuple[float, float] = (0.0, 0.0), evoked: tuple | None = None) -> tuple[dict, dict]:
    """ALF ``spikes`` and ``clusters`` of one sorting run, with brainbox's cluster metrics.

    Parameters
    ----------
    channels : dict
        The probe's channels (:func:`probe_channels`).
    n_units : int
        Number of clusters.
    duration : float
        Recording length, s.
    rng : numpy.random.Generator
        Every draw of the sorting.
    pid, tag : str
        Insertion id and sorting run (sorter and revision): parts of the cluster uuids.
    clock : (float, float)
        The probe's clock drift and offset (:func:`probe_clock`).
    evoked : (numpy.ndarray, numpy.ndarray), optional
        The session's stimulus onsets and contrasts: units in responsive regions also fire evoked
        spikes (:func:`alfnwb.synthetic.task.add_evoked`, drawn from their own stream).

    Returns
    -------
    spikes : dict
        ``times`` (session clock), ``samples``, ``clusters``, ``amps`` (V), ``depths`` (um), ``templates``.
    clusters : dict
        ``channels``, ``depths``, ``amps``, ``uuids`` and ``metrics`` (DataFrames), ``waveforms``,
        ``waveformsChannels``.
    """
    from brainbox.metrics.single_units import quick_unit_metrics

    samples, clu = spike_trains(n_units, duration, rng)
    peak, unit_amp, depths_c, amps, depths = unit_placement(channels, n_units, clu, rng)
    if evoked is not None:
        from .task import add_evoked

        samples, clu, amps, depths = add_evoked(
            {'samples': samples, 'clusters': clu, 'amps': amps, 'depths': depths}, evoked, peak,
            channels['atlas_id'], unit_amp, depths_c, clock, stable_rng(pid, tag, 'evoked')).values()
    # the probe's sample clock synchronised to the session's main clock, as IBL's spikes.times
    drift, offset = clock
    times = samples / FS * (1.0 + drift) + offset
    spikes = {'times': times, 'samples': samples, 'clusters': clu.astype(np.uint32), 'amps': amps,
              'depths': depths, 'templates': clu.astype(np.uint32)}
    waveforms, wf_channels = unit_templates(peak, unit_amp, channels, rng)
    # the cluster metrics exactly as IBL's pipeline computes them (ephys_tasks.CellQCMixin)
    metrics = pd.DataFrame(quick_unit_metrics(clu, times, amps, depths.astype(np.float64),
                                              cluster_ids=np.arange(n_units)))
    metrics['ks2_label'] = np.where(rng.uniform(size=n_units) < 0.4, 'good', 'mua')
    uuids = [stable_uuid(pid, tag, 'cluster', i) for i in range(n_units)]
    clusters = {'channels': peak.astype(np.int64), 'depths': depths_c.astype(np.float64), 'amps': unit_amp,
                'uuids': pd.DataFrame({'uuids': uuids}), 'metrics': metrics, 'waveforms': waveforms,
                'waveformsChannels': wf_channels}
    return spikes, clusters


def save_alf_object(folder: Path, obj: str, data: dict, files: list) -> None:
    """Save an ALF object's attributes as ``folder/obj.attr.ext`` files.

    Parameters
    ----------
    folder : pathlib.Path
        The ALF collection (with revision) folder, created if needed.
    obj : str
        ALF object name (``spikes``, ``clusters``, ``channels``).
    data : dict
        Attribute -> array (``.npy``) or DataFrame (``.pqt``; ``uuids`` as ``.csv``, as IBL's).
        Keys starting with ``_`` are skipped.
    files : list
        The paths written are appended to it.
    """
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
