"""Synthetic sessions written as a ONE cache: the session templates and :func:`write_cache`."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from .alf import FS, probe_channels, probe_clock, save_alf_object, spike_sorting
from .ids import stable_rng, stable_uuid
from .raw import write_raw
from .rest import insertion_responses, openapi_schema, rest_records
from .task import save_trials, task_trials
from .tables import dataset_rows, insertion_row, session_row, write_tables
from .truth import SynthCache, SynthProbe, SynthSession, SynthSorting
from .waveforms import write_waveforms

REVISION = '2024-05-06'

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


def _session(cache_dir: Path, seed: int, i: int, date: datetime.date) -> SynthSession:
    """The ``i``-th session: its subject cycles through :data:`SUBJECTS`, one session a day."""
    lab, subject = SUBJECTS[(seed + i) % len(SUBJECTS)]
    number = 1
    path = cache_dir / lab / 'Subjects' / subject / date.isoformat() / f'{number:03d}'
    return SynthSession(eid=stable_uuid(seed, 'session', i), lab=lab, subject=subject, date=date,
                        number=number, path=path)


def _write_sorting(session: SynthSession, probe: SynthProbe, run: tuple, alf_channels: dict, n_units: int,
                   duration: float, rng: np.random.Generator) -> list[Path]:
    """One sorting run ``(sorter, revision, default)`` of a probe: its ALF files, and its ground truth."""
    sorter, revision, default = run
    collection = f'alf/{probe.name}' + (f'/{sorter}' if sorter else '')
    folder = session.path / collection / (f'#{revision}#' if revision else '')
    spikes, clusters = spike_sorting(probe.channels, n_units, duration, rng, probe.pid, f'{sorter}{revision}',
                                     clock=(probe.clock_drift, probe.clock_offset), evoked=_evoked(session))
    files: list[Path] = []
    save_alf_object(folder, 'spikes', spikes, files)
    save_alf_object(folder, 'clusters', clusters, files)
    save_alf_object(folder, 'channels', alf_channels, files)
    probe.sortings.append(SynthSorting(sorter=sorter, revision=revision, collection=collection,
                                       default=default, spikes=spikes, clusters=clusters))
    return files


def _evoked(session: SynthSession) -> tuple | None:
    """The session's stimulus onsets and contrasts (None without trials)."""
    if session.trials is None:
        return None
    t = session.trials
    return t['stimOn_times'], np.nan_to_num(t['contrastLeft']) + np.nan_to_num(t['contrastRight'])


def _write_probe(session: SynthSession, pid: str, index: int, spec: tuple, rng: np.random.Generator,
                 n_units: int, duration: float, raw: bool | tuple) -> tuple[SynthProbe, dict, list, list]:
    """One insertion of a template: the probe, its Alyx records and its files (with default-revision flags)."""
    name, layout, histology, track, sortings = spec
    channels = probe_channels(layout, track, histology, rng)
    drift, offset = probe_clock(pid)
    probe = SynthProbe(pid=pid, eid=session.eid, name=name, layout=layout, histology=histology,
                       channels={k: v for k, v in channels.items() if not k.startswith('_')},
                       clock_drift=drift, clock_offset=offset)
    alf_channels = {'localCoordinates': channels['localCoordinates'], 'rawInd': channels['rawInd']}
    if histology == 'alf':
        alf_channels['brainLocationIds_ccf_2017'] = channels['atlas_id']
        alf_channels['mlapdv'] = channels['mlapdv']
    files: list[tuple[Path, bool]] = []
    for k, run in enumerate(sortings):
        # the other runs of a probe found a few more or fewer clusters
        units = max(n_units + (0 if k == 0 else int(rng.integers(-6, 7))), 3)
        files += [(f, run[2]) for f in _write_sorting(session, probe, run, alf_channels, units, duration, rng)]
    insertion, trajectories = rest_records(probe, channels, session)
    if raw is True or (raw and name in raw):
        new = write_raw(session.path / 'raw_ephys_data' / name, index, probe, session, insertion['serial'],
                        int(round(duration * FS)))
        probe.raw_path = new[0]
        files += [(f, True) for f in new]
        sorting = probe.default_sorting  # IBL's waveforms, cut from the raw band by IBL's code
        folder = session.path / sorting.collection / (f'#{sorting.revision}#' if sorting.revision else '')
        files += [(f, True) for f in write_waveforms(probe, sorting, folder)]
    return probe, insertion, trajectories, files


def write_cache(cache_dir: str | Path, seed: int = 0, sessions: int = 1, n_units: int = 40,
                duration: float = 300.0, start_date: datetime.date = datetime.date(2023, 3, 14),
                raw: bool | tuple[str, ...] = False, trials: bool = True) -> SynthCache:
    """Write synthetic IBL sessions as a standard ONE local cache.

    Parameters
    ----------
    cache_dir : str or pathlib.Path
        Folder to write to (created if needed). Existing tables are replaced.
    seed : int
        Random seed: ids and data depend only on it and the other arguments.
    sessions : int
        Number of sessions; they cycle through the templates described in :mod:`alfnwb.synthetic`.
    n_units : int
        Clusters of the default sorting of each probe (other sortings differ by a few).
    duration : float
        Recording length in seconds.
    start_date : datetime.date
        Date of the first session; the next ones follow day by day.
    raw : bool
        Also write each probe's raw AP band, consistent with its default sorting, at
        ``raw_ephys_data/probeXX/*.ap.{cbin,ch,meta}`` (int16, 385 channels at 30 kHz, ~770 bytes
        per sample before compression: keep ``duration`` short), and the default sorting's extracted
        waveforms (``waveforms.*``, by IBL's ``extract_wfs_cbin``); a tuple of probe names: only those.
    trials : bool
        Give every session an IBL-like task (:mod:`alfnwb.synthetic.task`): ``alf/_ibl_trials.*`` and
        units of responsive regions that respond to the stimulus. False: neither.

    Returns
    -------
    SynthCache
        The ground truth of everything written.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng_master = np.random.default_rng(seed)
    ses_rows, dset_rows, ins_rows = [], [], []
    responses = {'/api/schema': openapi_schema()}
    out = []
    for i in range(sessions):
        session = _session(cache_dir, seed, i, start_date + datetime.timedelta(days=i))
        ses_rows.append(session_row(session))
        files: list[tuple[Path, bool]] = []
        if trials:  # the task's own stream: the probes' data do not shift
            session.trials = task_trials(duration, stable_rng(seed, 'trials', i))
            files += [(f, True) for f in save_trials(session.path / 'alf', session.trials)]
        for index, spec in enumerate(TEMPLATES[i % len(TEMPLATES)]):
            pid = stable_uuid(seed, 'insertion', i, spec[0])
            rng = np.random.default_rng(rng_master.integers(2 ** 32))  # one stream per probe
            probe, insertion, trajectories, new = _write_probe(session, pid, index, spec, rng, n_units,
                                                               duration, raw)
            files += new
            ins_rows.append(insertion_row(probe, insertion))
            responses.update(insertion_responses(probe, insertion, trajectories))
            session.probes.append(probe)
        dset_rows += dataset_rows(session, files)
        out.append(session)

    write_tables(cache_dir, ses_rows, dset_rows, ins_rows, responses, origin='alfnwb-synthetic')
    return SynthCache(cache_dir=cache_dir, sessions=out)
