"""ONE's cache tables (``sessions.pqt``, ``datasets.pqt``, ``insertions.pqt``), from row dicts."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .ids import stable_uuid
from .rest import write_rest_cache
from .truth import SynthProbe, SynthSession


def file_md5(path: Path) -> str:
    """The md5 hex digest of a file, as ``datasets.pqt``'s ``hash`` column holds it."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def session_row(session: SynthSession) -> dict:
    """The ``sessions.pqt`` row of a session (an ephysChoiceWorld session of the Brain Wide Map).

    Parameters
    ----------
    session : SynthSession

    Returns
    -------
    dict
        ``id``, ``lab``, ``subject``, ``date``, ``number``, ``task_protocol``, ``projects``.
    """
    return {'id': session.eid, 'lab': session.lab, 'subject': session.subject, 'date': session.date,
            'number': session.number, 'task_protocol': '_iblrig_tasks_ephysChoiceWorld6.6.2',
            'projects': 'ibl_neuropixel_brainwide_01'}


def dataset_rows(session: SynthSession, files: list[tuple[Path, bool]]) -> list[dict]:
    """The ``datasets.pqt`` rows of files written in a session folder.

    Parameters
    ----------
    session : SynthSession
        The session; the files are under ``session.path``.
    files : list of (pathlib.Path, bool)
        Each file and whether it is in the default revision.

    Returns
    -------
    list of dict
        ``eid``, ``id`` (derived from the eid and relative path), ``rel_path``, ``file_size``,
        ``hash`` (md5), ``exists``, ``qc``, ``default_revision``.
    """
    rows = []
    for f, default in files:
        rel = f.relative_to(session.path).as_posix()
        rows.append({'eid': session.eid, 'id': stable_uuid(session.eid, rel), 'rel_path': rel,
                     'file_size': f.stat().st_size, 'hash': file_md5(f), 'exists': True, 'qc': 'NOT_SET',
                     'default_revision': default})
    return rows


def insertion_row(probe: SynthProbe, insertion: dict) -> dict:
    """The ``insertions.pqt`` row of a probe, from its Alyx insertion record.

    Parameters
    ----------
    probe : SynthProbe
    insertion : dict
        Its Alyx record (:func:`~alfnwb.synthetic.rest_records`).

    Returns
    -------
    dict
        ``eid``, ``id``, ``name``, ``model``, ``serial``, ``json`` (the record's ``json`` as a string).
    """
    return {'eid': probe.eid, 'id': probe.pid, 'name': probe.name, 'model': insertion['model'],
            'serial': insertion['serial'], 'json': json.dumps(insertion['json'])}


def write_tables(cache_dir: Path, ses_rows: list, dset_rows: list, ins_rows: list, responses: dict,
                 origin: str) -> None:
    """ONE's cache tables (sessions, datasets, insertions parquet) and its REST cache, from row dicts.

    Parameters
    ----------
    cache_dir : pathlib.Path
        The ONE cache folder; existing tables are replaced.
    ses_rows, dset_rows, ins_rows : list of dict
        Rows of :func:`session_row`, :func:`dataset_rows`, :func:`insertion_row`.
    responses : dict
        REST query -> response (:func:`~alfnwb.synthetic.write_rest_cache`).
    origin : str
        The tables' ``origin`` metadata.
    """
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
