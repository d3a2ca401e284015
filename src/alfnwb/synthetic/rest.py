"""Alyx REST records of synthetic insertions, in ONE's REST response cache (``DIR/.rest``).

A local-mode ``OneAlyx`` answers a request from this cache when the query string is exactly the one
it would send (:func:`rest_query`) and the cache holds the part of the OpenAPI schema the request
needs (:func:`openapi_schema`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np

from .ids import stable_uuid
from .truth import SynthCache, SynthProbe, SynthSession

ALIGNMENT_KEY = '2024-02-01T10:00:00_alfnwb'
TRAJECTORY_PROVENANCE = 'Ephys aligned histology track'


def _xyz_picks(channels: dict) -> list:
    """Histology track picks (um, IBL bregma space) along the probe axis, tip to surface."""
    d = np.linspace(0.0, 4200.0, 12)
    pts = channels['_tip'] + d[:, None] * channels['_up'] + 43.0 * channels['_across']
    return np.round(pts, 3).tolist()


def rest_records(probe: SynthProbe, channels: dict, session: SynthSession) -> tuple[dict, list]:
    """Alyx insertion and trajectory records of a probe.

    Parameters
    ----------
    probe : SynthProbe
        The insertion; its histology level sets the records' extended QC, track picks and alignment.
    channels : dict
        Its channels with the private track keys ``_tip``, ``_up``, ``_across``
        (:func:`~alfnwb.synthetic.probe_channels`).
    session : SynthSession
        Its session.

    Returns
    -------
    insertion : dict
        The ``/insertions`` record (with ``json.extended_qc`` and, once traced, ``json.xyz_picks``).
    trajectories : list of dict
        The ``Ephys aligned histology track`` trajectory, for ``aligned`` and ``resolved`` levels only.
    """
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
            'id': stable_uuid(probe.pid, 'trajectory'), 'probe_insertion': probe.pid, 'session': session.eid,
            'probe_name': probe.name, 'provenance': TRAJECTORY_PROVENANCE,
            'json': {ALIGNMENT_KEY: [ref, ref]},
        })
    return insertion, trajectories


def openapi_schema() -> dict:
    """The part of the Alyx OpenAPI schema that ONE needs to answer these requests from its cache.

    Returns
    -------
    dict
        The response to ``/api/schema``: the ``insertions`` list and read, and ``trajectories`` list
        endpoints.
    """
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


def rest_query(endpoint: str, **params) -> str:
    """The REST query string ONE's AlyxClient.rest builds for a list request.

    Parameters
    ----------
    endpoint : str
        E.g. ``'insertions'``.
    **params
        Query parameters (converted with ``str``), e.g. ``session=eid, name='probe00'``.

    Returns
    -------
    str
        E.g. ``'/insertions?session=...&name=probe00'``: the key of the response in the REST cache.
    """
    from one.webclient import update_url_params

    return '/' + update_url_params(endpoint, {k: str(v) for k, v in params.items()})


def insertion_responses(probe: SynthProbe, insertion: dict, trajectories: list) -> dict:
    """The REST responses a loader requests for one insertion.

    Parameters
    ----------
    probe : SynthProbe
        The insertion.
    insertion, trajectories
        Its records (:func:`rest_records`).

    Returns
    -------
    dict
        Query -> response, for the insertion list (by session and name), the insertion read (by pid)
        and the aligned-trajectory list (by session and probe name); for :func:`write_rest_cache`.
    """
    queries = insertion_queries(probe)
    return {
        queries['insertions']: [insertion],
        queries['insertion']: insertion | {'session_info': {}},
        queries['trajectories']: trajectories,
    }


def insertion_queries(probe: SynthProbe) -> dict:
    """The REST queries a loader sends for one insertion, as keys of ONE's REST cache.

    Parameters
    ----------
    probe : SynthProbe
        The insertion.

    Returns
    -------
    dict
        ``'insertions'``: the insertion list by session and name; ``'insertion'``: the insertion read
        by pid; ``'trajectories'``: the aligned-trajectory list by session and probe name.
    """
    return {
        'insertions': rest_query('insertions', session=probe.eid, name=probe.name),
        'insertion': f'/insertions/{probe.pid}',
        'trajectories': rest_query('trajectories', session=probe.eid, probe=probe.name,
                                   provenance=TRAJECTORY_PROVENANCE),
    }


def alyx_records(cache: SynthCache) -> dict:
    """Every Alyx insertion and trajectory record of a synthetic cache, read back from its REST cache.

    What a server holds, for a stand-in of Alyx to answer from: the records :func:`write_cache`
    stored in ``cache_dir/.rest`` (:func:`insertion_responses`), one per insertion and trajectory.

    Parameters
    ----------
    cache : SynthCache
        As returned by :func:`~alfnwb.synthetic.write_cache`.

    Returns
    -------
    dict
        ``'insertions'``: list of insertion records (as the ``/insertions/<pid>`` read returns them);
        ``'trajectories'``: list of trajectory records.
    """
    rest = Path(cache.cache_dir) / '.rest'

    def read(query: str):
        return json.loads((rest / _rest_name(query)).read_text())[0]

    out = {'insertions': [], 'trajectories': []}
    for probe in cache.probes:
        queries = insertion_queries(probe)
        out['insertions'].append(read(queries['insertion']))
        out['trajectories'] += read(queries['trajectories'])
    return out


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
        (rest / _rest_name(query)).write_text(json.dumps([response, expiry]))


def _rest_name(query: str) -> str:
    """The file name of a REST query's response in ONE's REST cache (the sha1 of the query)."""
    return hashlib.sha1(query.encode('utf-8')).hexdigest()
