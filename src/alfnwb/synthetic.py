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

__all__ = ['write_cache', 'SynthCache', 'SynthSession', 'SynthProbe', 'SUBJECTS', 'probe_geometry']

NAMESPACE = uuid.UUID('6a0c1c74-4f0e-4d59-a9ae-3d33c6a3c2e5')
FS = 30000.0
TIP_UM = 200.0  # distance from the probe tip to the first site (as brainbox's TIP_SIZE_UM)
REVISION = '2024-05-06'
ALIGNMENT_KEY = '2024-02-01T10:00:00_alfnwb'
TRAJECTORY_PROVENANCE = 'Ephys aligned histology track'

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


def _sorting(channels: dict, n_units: int, duration: float, rng: np.random.Generator, pid: str, tag: str):
    from brainbox.metrics.single_units import quick_unit_metrics

    samples, clu = _spike_trains(n_units, duration, rng)
    times = samples / FS
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
                duration: float = 300.0, start_date: datetime.date = datetime.date(2023, 3, 14)) -> SynthCache:
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

    Returns
    -------
    SynthCache
        The ground truth of everything written.
    """
    from iblutil.io import parquet
    from one.alf.cache import QC_TYPE

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
        for name, layout, histology, track, sortings in TEMPLATES[i % len(TEMPLATES)]:
            pid = _uuid(seed, 'insertion', i, name)
            rng = np.random.default_rng(rng_master.integers(2 ** 32))
            channels = _channels(layout, track, histology, rng)
            probe = SynthProbe(pid=pid, eid=eid, name=name, layout=layout, histology=histology,
                               channels={k: v for k, v in channels.items() if not k.startswith('_')})
            alf_channels = {'localCoordinates': channels['localCoordinates'], 'rawInd': channels['rawInd']}
            if histology == 'alf':
                alf_channels['brainLocationIds_ccf_2017'] = channels['atlas_id']
                alf_channels['mlapdv'] = channels['mlapdv']
            for k, (sorter, revision, default) in enumerate(sortings):
                collection = f'alf/{name}' + (f'/{sorter}' if sorter else '')
                folder = spath / collection / (f'#{revision}#' if revision else '')
                units = max(n_units + (0 if k == 0 else int(rng.integers(-6, 7))), 3)
                spikes, clusters = _sorting(probe.channels, units, duration, rng, pid, f'{sorter}{revision}')
                new: list[Path] = []
                _save(folder, 'spikes', spikes, new)
                _save(folder, 'clusters', clusters, new)
                _save(folder, 'channels', alf_channels, new)
                files += [(f, default) for f in new]
                probe.sortings.append(SynthSorting(sorter=sorter, revision=revision, collection=collection,
                                                   default=default, spikes=spikes, clusters=clusters))
            insertion, trajectories = _rest_records(probe, channels, session)
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

    meta = {'date_created': datetime.datetime.now().isoformat(sep=' ', timespec='minutes'),
            'origin': 'alfnwb-synthetic', 'min_api_version': '3.0.0'}
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
    return SynthCache(cache_dir=cache_dir, sessions=out)
