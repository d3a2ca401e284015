"""The NWBFile itself: session and subject metadata, provenance."""

from __future__ import annotations

import uuid

import numpy as np

from ..model import SessionData
from ..metadata import LABS, session_start_time
from . import layout

#: Namespace of the deterministic NWB identifiers.
IDENTIFIER_NAMESPACE = uuid.UUID('0b5d2c4e-7f4a-4a53-9a43-5f1f5ad6e0c1')
PROVENANCE_TABLE = layout.PROVENANCE_TABLE


def identifier(session: SessionData) -> str:
    """Deterministic file identifier: the same data and choices give the same identifier."""
    parts = [session.eid] + [f'{p.provenance.pid}:{p.provenance.collection}:{p.provenance.revision}'
                             for p in session.probes]
    return str(uuid.uuid5(IDENTIFIER_NAMESPACE, '|'.join(parts)))


def make_nwbfile(session: SessionData, metadata: dict | None = None):
    """Create the NWBFile with session and subject metadata.

    Parameters
    ----------
    session : SessionData
        From :func:`alfnwb.loading.load_session`.
    metadata : dict, optional
        From :func:`alfnwb.metadata.read_metadata`; overrides the defaults.

    Returns
    -------
    pynwb.NWBFile
    """
    from pynwb import NWBFile
    from pynwb.file import Subject

    metadata = metadata or {'NWBFile': {}, 'Subject': {}}
    nwb_meta = dict(metadata.get('NWBFile', {}))
    subj_meta = dict(metadata.get('Subject', {}))
    start, start_note = session_start_time(session.lab, session.date, session.start_time, nwb_meta)
    nwb_meta.pop('session_start_time', None)
    nwb_meta.pop('timezone', None)
    probes = ', '.join(p.provenance.probe for p in session.probes)
    kwargs = {
        'session_description': (f'IBL session {session.subject} {session.date} #{session.number} '
                                f'({session.task_protocol or "task unknown"}); spike sorting of {probes}'),
        'institution': LABS.get(session.lab, ('', 'unknown'))[1] or 'unknown',
        'lab': session.lab or 'unknown',
        'experiment_description': 'International Brain Laboratory Neuropixels recording'
                                  + (f', project(s) {session.projects}' if session.projects else ''),
        'keywords': ['IBL', 'Neuropixels', 'spike sorting', 'ALF'],
        'notes': f'session_start_time from the {start_note}. Exported by alfnwb from ONE/ALF.',
    }
    if session.task_protocol:
        kwargs['protocol'] = session.task_protocol
    kwargs.update(nwb_meta)
    subject = Subject(
        subject_id=session.subject or 'unknown',
        species=subj_meta.pop('species', 'Mus musculus'),
        sex=subj_meta.pop('sex', 'U'),
        description=subj_meta.pop('description', f'IBL subject {session.subject} of {session.lab}'),
        **_age(subj_meta),
    )
    return NWBFile(
        identifier=identifier(session),
        session_start_time=start,
        session_id=session.eid,
        subject=subject,
        **kwargs,
    )


def _age(subj_meta: dict) -> dict:
    """Age fields: the user's, else an open range 'P0D/' (born before the session; unknown offline)."""
    out = dict(subj_meta)
    if 'date_of_birth' in out:
        import datetime

        dob = datetime.datetime.fromisoformat(out['date_of_birth'])
        out['date_of_birth'] = dob if dob.tzinfo else dob.replace(tzinfo=datetime.timezone.utc)
    elif 'age' not in out:
        out['age'] = 'P0D/'
        out['age__reference'] = 'birth'
    return out


def add_provenance(nwbfile, session: SessionData, num_samples: list[int] | None = None) -> None:
    """One row per probe: pid, sorter, collection, revision, histology level, software versions.

    ``num_samples``: length of each probe's recording in samples (0 when unknown), which a
    SortingAnalyzer read back from the file needs.

    Stored as a DynamicTable in ``processing/ecephys`` so that any NWB reader sees it.
    """
    from hdmf.common import DynamicTable, VectorData

    module = ecephys_module(nwbfile)
    rows = [p.provenance.to_dict() for p in session.probes]
    for row, n in zip(rows, num_samples or [0] * len(rows)):
        row['num_samples'] = n
    cols = []
    for c in layout.PROVENANCE:
        key = next((k for k, v in layout.PROVENANCE_FIELDS.items() if v == c.name), c.name)
        data = (np.asarray([r[key] for r in rows], dtype=np.int64) if c.dtype == 'int64'
                else [str(r[key]) for r in rows])
        cols.append(VectorData(name=c.name, description=c.description, data=data))
    module.add(DynamicTable(name=PROVENANCE_TABLE, description=layout.PROVENANCE.description, columns=cols))


def ecephys_module(nwbfile):
    """The ``ecephys`` processing module, created on first use."""
    if 'ecephys' not in nwbfile.processing:
        nwbfile.create_processing_module('ecephys', 'Processed extracellular electrophysiology: spike sorting')
    return nwbfile.processing['ecephys']


def add_trials(nwbfile, trials) -> None:
    """The session's IBL trials as the NWB ``trials`` table (:data:`alfnwb.nwb.layout.TRIALS`).

    ``start_time``/``stop_time`` are ``trials.intervals``; every other attribute is a column under
    its IBL name, in the loader's order, values (NaN included) and dtype as loaded.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
    trials : pandas.DataFrame
        As brainbox's ``SessionLoader.load_trials()`` returns it (``intervals_0``, ``intervals_1``, ...).
    """
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    names = {alf: nwb for nwb, alf in layout.TRIALS_INTERVALS.items()}
    order = list(layout.TRIALS_INTERVALS.values()) + [c for c in trials.columns if c not in names]
    cols = [VectorData(name=names.get(c, c), description=layout.trials_column_description(names.get(c, c)),
                       data=np.asarray(trials[c].to_numpy())) for c in order]
    nwbfile.trials = TimeIntervals(name='trials', description=layout.TRIALS.description, columns=cols)
