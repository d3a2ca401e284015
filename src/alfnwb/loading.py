"""Load IBL spike sorting through ONE and brainbox's ``SpikeSortingLoader``.

This module is the only one that talks to ONE. It fills the data model of :mod:`alfnwb.model`
(:class:`ProbeData`, :class:`SessionData`: dicts of numpy arrays plus a :class:`Provenance`
record); the NWB builders take that data and know nothing of ONE.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import logging
import os
import pickle
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._compat import (fast_md5_checks, one_http_timeout, one_insertions_table, spike_sorting_loader_class,
                      trials_collection)
from .errors import (AlfNwbError, AtlasRequiredError, DataWarning, HistologyError, InvalidDataError, NetworkError,
                     NotFoundError, SorterNotFoundError)
from .waveforms import waveform_rows
from .model import HISTOLOGY_LEVELS, KILOSORT25, UNREVISIONED, ProbeData, Provenance, SessionData

if TYPE_CHECKING:
    import pandas as pd

_logger = logging.getLogger(__name__)

#: ONE revision that sorts before every dated revision, so that ONE picks the unrevisioned files.
_BEFORE_ANY_REVISION = '0000-00-00'
#: Extra datasets loaded beyond SpikeSortingLoader's defaults.
EXTRA_DATASETS = ['spikes.samples', 'clusters.amps', 'clusters.waveforms', 'clusters.waveformsChannels']
#: Environment variable: seconds without an answer after which a request to Alyx or the file server fails.
HTTP_TIMEOUT_ENV = 'ALFNWB_HTTP_TIMEOUT'
#: The default of :data:`HTTP_TIMEOUT_ENV`, s.
DEFAULT_HTTP_TIMEOUT = 60.0


def http_timeout() -> float:
    """Seconds alfnwb lets Alyx or the file server stay silent: ``$ALFNWB_HTTP_TIMEOUT``, default 60.

    Each wait for a connection or for the next bytes of an answer is bounded, not a whole download.

    Raises
    ------
    AlfNwbError
        The variable is not a positive number.
    """
    raw = os.environ.get(HTTP_TIMEOUT_ENV, '').strip()
    if not raw:
        return DEFAULT_HTTP_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise AlfNwbError(f'{HTTP_TIMEOUT_ENV}={raw!r}: give a number of seconds greater than 0')
    return seconds


def _online(func):
    """Run ``func`` with every HTTP request of ONE bounded by :func:`http_timeout` (ONE sets none)."""
    @functools.wraps(func)
    def bounded(*args, **kwargs):
        with one_http_timeout(http_timeout()):
            return func(*args, **kwargs)

    return bounded


def _one_line(text: object, limit: int = 160) -> str:
    """``str(text)`` on one line, cut to ``limit`` characters (ONE's messages span lines)."""
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _http_status_failure(exc: Exception) -> str | None:
    """An HTTP error response that is a network failure (credentials refused, 5xx), else None."""
    response = getattr(exc, 'response', None)
    status = getattr(response, 'status_code', None) or getattr(exc, 'code', None)
    url = getattr(response, 'url', None) or getattr(exc, 'url', None) or ''
    if status in (401, 403) or (status == 400 and url.rstrip('/').endswith('/auth-token')):
        return f'{url}: credentials refused (HTTP {status})'
    if status is not None and status >= 500:
        return f'{url}: server error (HTTP {status})'
    return None  # 404 and other client errors say something about what was asked for


def network_failure(exc: BaseException) -> str | None:
    """Why an exception raised by ONE is a network failure, in a few words naming the URL; else None.

    Network failures: no connection, no answer within :func:`http_timeout`, HTTP 5xx, credentials
    refused (HTTP 401/403, or 400 from Alyx's ``/auth-token``), a connection dropped mid-answer. An
    HTTP 404 is not one: the database says that the thing asked for does not exist.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str or None
    """
    import http.client
    import urllib.error

    import requests

    if isinstance(exc, (requests.HTTPError, urllib.error.HTTPError)):
        return _http_status_failure(exc)
    url = getattr(getattr(exc, 'request', None), 'url', None) or 'the server'
    if isinstance(exc, requests.Timeout):
        return f'{url}: no answer within {http_timeout():g} s'
    if isinstance(exc, requests.ConnectionError):
        errno = re.search(r'\[Errno -?\d+\] [^\'")]+', str(exc))
        return f'{url}: cannot connect ({errno.group(0) if errno else type(exc).__name__})'
    if isinstance(exc, urllib.error.URLError):
        return f'cannot reach the file server ({_one_line(exc.reason, 80)})'
    if isinstance(exc, TimeoutError):
        return f'no answer within {http_timeout():g} s'
    if isinstance(exc, (ConnectionError, http.client.HTTPException)):
        return f'connection failed ({type(exc).__name__}: {_one_line(exc, 100)})'
    if isinstance(exc, requests.RequestException):  # e.g. an answer broken off mid-stream
        return f'{url}: request failed ({type(exc).__name__})'
    return None


@contextlib.contextmanager
def _network_errors(subject: str):
    """Network failures raised inside become ``NetworkError('<subject>: <why>')``; everything else passes."""
    try:
        yield
    except AlfNwbError:
        raise
    except Exception as e:  # noqa: BLE001 - sorted here: only network failures are turned into ours
        why = network_failure(e)
        if why is None:
            raise
        raise NetworkError(f'{subject}: {why}') from e


@_online
def open_one(base_url: str | None = None, cache_dir: str | Path | None = None, mode: str = 'auto',
             username: str | None = None, password: str | None = None):
    """A ONE instance, logged in when it is on a database, with any failure as one line.

    Parameters
    ----------
    base_url : str, optional
        Alyx database URL. Without it, a plain ``One`` on ``cache_dir``.
    cache_dir : str or pathlib.Path, optional
        ONE cache folder (files and tables); with a database, ONE's default for it if not given.
    mode : {'auto', 'remote', 'local'}
        ``auto``: ``remote`` with a ``base_url``, otherwise ``local``.
    username, password : str, optional
        Alyx credentials. Without them, ONE's stored login and token (an earlier login, ``ONE.setup``).

    Returns
    -------
    one.api.One
        ``OneAlyx`` with a ``base_url``.

    Raises
    ------
    NetworkError
        The database cannot be reached or refuses the credentials.
    AlfNwbError
        No username is known for the database.
    """
    from one.api import ONE

    if mode not in ('auto', 'remote', 'local'):
        raise AlfNwbError(f'mode {mode!r}: one of auto, remote, local')
    if base_url and not re.match(r'https?://', base_url):
        raise AlfNwbError(f'base URL {base_url!r}: give the database address with http:// or https://')
    mode = ('remote' if base_url else 'local') if mode == 'auto' else mode
    kwargs = {'mode': mode, **({'cache_dir': str(cache_dir)} if cache_dir else {})}
    if base_url:
        kwargs.update({'base_url': base_url, 'silent': True, 'username': username, 'password': password})
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        one = ONE(**kwargs)
        if mode == 'remote' and hasattr(one, 'alyx') and not one.alyx.is_logged_in:
            one.alyx.authenticate()  # now, with the stored login: a refusal is not a surprise later
        return one
    except Exception as e:  # noqa: BLE001 - ONE raises several kinds; the unknown ones pass on
        where = f'Alyx {base_url or "(default database)"}'
        if isinstance(e, ValueError) and 'username' in str(e):
            raise AlfNwbError(f'{where}: no username: pass username and password (command line: '
                              f'ALYX_USERNAME, ALYX_PASSWORD) or log in once with ONE') from e
        why = network_failure(e)
        if why is None:
            raise
        hint = '; check the username and password' if 'credentials refused' in why else ''
        raise NetworkError(f'{where}: {why}{hint}') from e


class _NoVolumeAtlas:
    """Stands in for an AllenAtlas: brain regions work offline, anything needing the volume raises.

    ``SpikeSortingLoader`` creates ``AllenAtlas()`` (a download) when given no atlas; the ``alf``
    histology level only needs ``atlas.regions``.
    """

    def __init__(self, pid: str):
        from iblatlas.regions import BrainRegions

        self.regions = BrainRegions()
        self._pid = pid

    def __getattr__(self, name):
        raise AtlasRequiredError(
            f'insertion {self._pid}: channel locations come from Alyx histology records and need the Allen '
            f'annotation volume; pass atlas=AllenAtlas() (command line: --allen-atlas) or --min-histology none '
            f'with a cache that has channels.brainLocationIds_ccf_2017')


def _versions() -> dict:
    from importlib.metadata import version, PackageNotFoundError

    out = {}
    for key, pkg in (('alfnwb_version', 'alfnwb'), ('ibllib_version', 'ibllib'), ('one_version', 'ONE-api')):
        try:
            out[key] = version(pkg)
        except PackageNotFoundError:
            out[key] = ''
    return out


def _sorter_name(collection: str, probe: str) -> str:
    tail = collection[len(f'alf/{probe}'):].strip('/')
    return tail or KILOSORT25


def _sorter_collection(sorter: str, probe: str) -> str:
    sorter = '' if sorter in (KILOSORT25, '', None) else sorter
    return f'alf/{probe}' + (f'/{sorter}' if sorter else '')


@_online
def available_sortings(one, eid: str, probe: str) -> dict[str, list[str]]:
    """Spike sorters and revisions present for a probe.

    Parameters
    ----------
    one : one.api.One
        Any ONE instance (remote or local).
    eid : str
        Session id.
    probe : str
        Probe name, e.g. ``probe00``.

    Returns
    -------
    dict
        Sorter name (``iblsorter``, ``pykilosort``, ``kilosort2.5``) -> revisions (``''`` for the
        unrevisioned datasets), in ONE's order.
    """
    with _network_errors(f'session {eid} ({probe})'):
        return _sortings(one, eid, probe)


def _sortings(one, eid: str, probe: str) -> dict[str, list[str]]:
    """:func:`available_sortings`, network failures as ONE raises them (for the caller to name its insertion)."""
    colls = one.list_collections(eid, filename='spikes.times*', collection=f'alf/{probe}*')
    out = {}
    for c in sorted(colls, key=len):
        if c != f'alf/{probe}' and not c.startswith(f'alf/{probe}/'):
            continue
        revs = one.list_revisions(eid, filename='spikes.times*', collection=c) or ['']
        out[_sorter_name(c, probe)] = sorted(revs)
    return out


def _choose_sorting(one, eid: str, probe: str, pid: str, spike_sorter: str | None, revision: str | None):
    """Validate the sorter/revision choice; return (sorter, collection, ONE revision argument)."""
    found = _sortings(one, eid, probe)
    if not found:
        raise NotFoundError(f'insertion {pid} ({probe}): no spike sorting (spikes.times) in session {eid}')
    listing = '; '.join(f'{s}: {", ".join(r or UNREVISIONED for r in revs)}' for s, revs in found.items())
    if spike_sorter is None:  # IBL's recommendation order, else whatever exists
        sorter = next((s for s in ('iblsorter', 'pykilosort', KILOSORT25) if s in found), next(iter(found)))
    else:
        sorter = KILOSORT25 if spike_sorter in ('', 'ks2.5', 'kilosort2.5', 'ks25') else spike_sorter
        if sorter not in found:
            raise SorterNotFoundError(
                f'insertion {pid} ({probe}): spike sorter {spike_sorter!r} not found (spikes.times); available: {listing}')
    revs = found[sorter]
    if revision in (None, 'default'):
        one_revision = None
    elif revision in (UNREVISIONED, ''):
        if '' not in revs:
            raise SorterNotFoundError(f'insertion {pid} ({probe}): {sorter} has no unrevisioned datasets; '
                                      f'available: {listing}')
        one_revision = _BEFORE_ANY_REVISION
    else:
        if revision not in revs:
            raise SorterNotFoundError(f'insertion {pid} ({probe}): revision {revision!r} of {sorter} not found '
                                      f'(spikes.times); available: {listing}')
        one_revision = revision
    return sorter, _sorter_collection(sorter, probe), one_revision


def insertions_table(one) -> pd.DataFrame | None:
    """The ONE cache's insertions table (from ``insertions.pqt``), or None if it has none.

    Parameters
    ----------
    one : one.api.One
        Any ONE instance.

    Returns
    -------
    pandas.DataFrame or None
        One row per insertion with ``eid`` and ``id`` as str columns (plus ``name``, ``model``, ...);
        None when the cache holds no insertions table or an empty one.
    """
    table = one_insertions_table(one)
    if table is None or not len(table):
        return None
    table = table.reset_index()
    return table.assign(eid=table['eid'].astype(str), id=table['id'].astype(str))


def _ask_alyx(one, method: str, arg: str):
    """``one.pid2eid``/``one.eid2pid`` where the ONE object has them (a plain ``One`` has not).

    None when it cannot answer: a local-mode ``OneAlyx`` without the record raises
    ``NotImplementedError``, and the cache's insertions table is asked instead.
    """
    func = getattr(one, method, None)
    if func is None:
        return None
    try:
        return func(arg)
    except NotImplementedError:
        return None


@_online
def resolve_pid(one, pid: str) -> tuple[str, str]:
    """Session id and probe name of an insertion, from Alyx or the cache's ``insertions`` table.

    A plain ``one.api.One`` has no ``pid2eid``; it still has the insertions table when the cache
    holds ``insertions.pqt``.
    """
    pid = str(pid)
    try:
        uuid.UUID(pid)
    except ValueError:
        raise NotFoundError(f'insertion {pid!r}: not a valid probe insertion id (UUID)') from None
    with _network_errors(f'insertion {pid}'):
        eid, name = _ask_alyx(one, 'pid2eid', pid) or (None, None)
    if eid is None and (table := insertions_table(one)) is not None:
        hit = table[table['id'] == pid]
        if len(hit):
            eid, name = hit['eid'].iloc[0], hit['name'].iloc[0]
    if eid is None:
        raise NotFoundError(f'insertion {pid}: not found in the ONE cache (insertions.pqt) or Alyx')
    return str(eid), str(name)


@_online
def session_probes(one, eid: str) -> list[tuple[str, str]]:
    """(pid, probe name) of every insertion of a session, sorted by name."""
    eid = str(eid)
    with _network_errors(f'session {eid}'):
        pids, names = _ask_alyx(one, 'eid2pid', eid) or (None, None)
    if pids is None and (table := insertions_table(one)) is not None:
        sel = table[table['eid'] == eid]
        pids, names = list(sel['id']), list(sel['name'])
    if not pids:
        raise NotFoundError(f'session {eid}: no probe insertion found (insertions.pqt or Alyx)')
    return sorted(((str(p), str(n)) for p, n in zip(pids, names)), key=lambda x: x[1])


@_online
def session_metadata(one, eid: str) -> SessionData:
    """Session metadata from ONE (the cache's sessions table offline, Alyx online)."""
    with _network_errors(f'session {eid}'):
        return _session_metadata(one, str(eid))


def _session_metadata(one, eid: str) -> SessionData:
    """:func:`session_metadata`, network failures as ONE raises them (for the caller to name what it loads)."""
    try:
        det = one.get_details(eid)
    except Exception as e:  # ONE raises several kinds for an unknown eid
        if network_failure(e) is not None:
            raise
        raise NotFoundError(f'session {eid}: not found in the ONE cache (sessions.pqt) or Alyx ({e})') from None
    if det is None:
        raise NotFoundError(f'session {eid}: not found in the ONE cache (sessions.pqt) or Alyx')
    date = det.get('date')
    if isinstance(date, str):
        date = datetime.date.fromisoformat(date[:10])
    start = det.get('start_time')
    if isinstance(start, str):
        start = datetime.datetime.fromisoformat(start)
    number = det.get('number')
    return SessionData(eid=eid, lab=str(det.get('lab') or ''), subject=str(det.get('subject') or ''),
                       date=date, number=None if number is None else int(number),
                       task_protocol=str(det.get('task_protocol') or ''),
                       projects=','.join(det['projects']) if isinstance(det.get('projects'), list)
                       else str(det.get('projects') or ''), start_time=start)


def _level(histology: str | None) -> str:
    return histology if histology in HISTOLOGY_LEVELS[:-1] else 'none'


def _shank(lateral_um: np.ndarray) -> np.ndarray:
    # Multi-shank IBL probes store x with the 250 um shank pitch included (NP2.4: 27..809 um);
    # single-shank x stays below 250 um.
    return (np.asarray(lateral_um, dtype=float) // 250).astype(np.int64)


def _normalise_channels(raw: dict, alf_channels: dict | None, pid: str) -> dict:
    """Channels in SpikeSortingLoader's histology shape, whatever the histology level."""
    ch = dict(raw)
    if 'localCoordinates' in ch:
        lc = np.asarray(ch.pop('localCoordinates'))
        ch.setdefault('lateral_um', lc[:, 0])
        ch.setdefault('axial_um', lc[:, 1])
    if 'rawInd' not in ch:
        if alf_channels is not None and 'rawInd' in alf_channels:
            ch['rawInd'] = alf_channels['rawInd']
        else:
            ch['rawInd'] = np.arange(np.asarray(ch['axial_um']).size)
    if 'lateral_um' not in ch:
        raise InvalidDataError(f'insertion {pid}: channels.localCoordinates missing')
    ch['shank'] = _shank(ch['lateral_um'])
    n = np.asarray(ch['rawInd']).size
    bad = [k for k, v in ch.items() if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] != n]
    if bad:
        alf_name = {'lateral_um': 'localCoordinates', 'axial_um': 'localCoordinates', 'x': 'mlapdv', 'y': 'mlapdv',
                    'z': 'mlapdv', 'atlas_id': 'brainLocationIds_ccf_2017',
                    'acronym': 'brainLocationIds_ccf_2017'}.get(bad[0], bad[0])
        raise InvalidDataError(f'insertion {pid}: channels.{alf_name} has {len(ch[bad[0]])} rows, '
                               f'channels.rawInd has {n}')
    return ch


def _check(pid: str, spikes: dict, clusters: dict, channels: dict, collection: str):
    """Consistency checks that would otherwise surface deep inside pynwb."""
    need = [('spikes', 'times'), ('spikes', 'clusters'), ('clusters', 'channels')]
    objs = {'spikes': spikes, 'clusters': clusters}
    for obj, attr in need:
        if attr not in objs[obj]:
            raise InvalidDataError(f'insertion {pid}: {collection}/{obj}.{attr} missing')
    n = spikes['times'].size
    for attr in ('clusters', 'amps', 'depths', 'samples'):
        if attr in spikes and spikes[attr].shape[0] != n:
            raise InvalidDataError(f'insertion {pid}: {collection}/spikes.{attr} has {spikes[attr].shape[0]} '
                                   f'rows, spikes.times has {n}')
    if n and not np.all(np.isfinite(spikes['times'])):
        raise InvalidDataError(f'insertion {pid}: {collection}/spikes.times holds NaN or infinite values')
    if n > 1 and np.any(spikes['times'][1:] < spikes['times'][:-1]):  # no float copy of the times
        raise InvalidDataError(f'insertion {pid}: {collection}/spikes.times is not sorted in time')
    nc = clusters['channels'].size
    if n:
        c = spikes['clusters']  # min and max in its own dtype: no int64 copy of every spike
        worst = int(c.min()) if int(c.min()) < 0 else int(c.max())
        if worst < 0 or worst >= nc:
            raise InvalidDataError(f'insertion {pid}: {collection}/spikes.clusters refers to cluster {worst} but '
                                   f'clusters.channels has {nc} rows')
    for attr in ('depths', 'amps', 'uuids', 'waveforms', 'waveformsChannels'):
        if attr in clusters and clusters[attr] is not None and np.asarray(clusters[attr]).shape[0] != nc:
            raise InvalidDataError(f'insertion {pid}: {collection}/clusters.{attr} has '
                                   f'{np.asarray(clusters[attr]).shape[0]} rows, clusters.channels has {nc}')
    nch = channels['rawInd'].size
    for attr in ('channels', 'waveformsChannels'):
        if attr in clusters and clusters[attr] is not None and np.asarray(clusters[attr]).size:
            ch = np.asarray(clusters[attr]).astype(np.int64)
            worst = int(ch.min()) if ch.min() < 0 else int(ch.max())
            if worst < 0 or worst >= nch:
                raise InvalidDataError(f'insertion {pid}: {collection}/clusters.{attr} refers to channel {worst} '
                                       f'but there are {nch} channels')


@_online
def load_probe(one, pid: str | None = None, *, eid: str | None = None, probe: str | None = None,
               spike_sorter: str | None = None, revision: str | None = None, atlas=None,
               min_histology: str = 'none', check_hash: bool = False) -> ProbeData:
    """Load one insertion's spikes, clusters and channels with ``SpikeSortingLoader``.

    Parameters
    ----------
    one : one.api.One
        Any ONE instance: remote, or local on a cache (a plain ``One`` resolves pids through the
        cache's ``insertions.pqt``).
    pid : str, optional
        Probe insertion id. Alternatively ``eid`` and ``probe``.
    eid, probe : str, optional
        Session id and probe name, when no pid is given.
    spike_sorter : str, optional
        ``iblsorter``, ``pykilosort`` or ``kilosort2.5`` (the old ``alf/probeXX`` layout). Default:
        the first present in that order, as IBL recommends.
    revision : str, optional
        A dataset revision (e.g. ``2024-05-06``), ``unrevisioned`` for the original datasets, or
        None for the default revision.
    atlas : iblatlas.atlas.AllenAtlas, optional
        Needed only for histology held in Alyx (``resolved``, ``aligned``, ``traced``). Never created
        implicitly: without it such insertions raise :class:`AtlasRequiredError`.
    min_histology : str
        Refuse insertions whose histology is below this level (``alf`` > ``resolved`` > ``aligned``
        > ``traced`` > ``none``).
    check_hash : bool
        Let ONE verify the md5 of each file already in the cache against its dataset record (slow
        on full-size probes; corrupt ``.npy`` files are caught when read either way). Files
        downloaded now are always checked, size and md5.

    Returns
    -------
    ProbeData

    Raises
    ------
    NetworkError
        Alyx or the file server failed (unreachable, timed out, HTTP 5xx, credentials refused), or
        a download came incomplete twice.
    """
    if min_histology not in HISTOLOGY_LEVELS:
        raise HistologyError(f'unknown histology level {min_histology!r}: one of {", ".join(HISTOLOGY_LEVELS)}')
    with _network_errors(f'insertion {pid}' if pid is not None else f'session {eid} ({probe})'):
        pid, eid, probe = _resolve_insertion(one, pid, eid, probe)
    with _network_errors(f'insertion {pid}'):
        return _load_insertion(one, pid, eid, probe, spike_sorter, revision, atlas, min_histology, check_hash)


def _load_insertion(one, pid: str, eid: str, probe: str, spike_sorter: str | None, revision: str | None, atlas,
                    min_histology: str, check_hash: bool) -> ProbeData:
    """:func:`load_probe` of a resolved insertion."""
    fast_md5_checks()
    sorter, collection, one_revision = _choose_sorting(one, eid, probe, pid, spike_sorter, revision)
    _fetch_collection(one, eid, pid, collection, one_revision, check_hash)  # before the loader reads anything
    loader = spike_sorting_loader_class()(one=one, eid=eid, pname=probe,
                                          atlas=atlas if atlas is not None else _NoVolumeAtlas(pid))
    loader.pid = pid
    spikes, clusters, channels = _load_spike_sorting(loader, one, eid, pid, sorter, collection, one_revision,
                                                     check_hash)
    try:
        return _probe_data(loader, one, eid, pid, probe, sorter, collection, one_revision, revision, min_histology,
                           spikes, clusters, channels)
    finally:
        for bunch in (spikes, clusters, channels):  # copied into the ProbeData's own dicts by now
            _release(bunch)


def _release(bunch) -> None:
    """Empty an ALF object ONE returned once its arrays are copied out.

    ONE's ``AlfBunch`` is its own ``__dict__``: a reference cycle, which only the cyclic garbage
    collector frees, and every array in it with it. In a batch worker the oldest generation is
    collected after tens of jobs: ~0.1 GB a job of 3 M spikes piled up until then.
    """
    if isinstance(bunch, dict):
        bunch.clear()


def _probe_data(loader, one, eid: str, pid: str, probe: str, sorter: str, collection: str, one_revision: str | None,
                revision: str | None, min_histology: str, spikes, clusters, channels) -> ProbeData:
    """The ProbeData of the ALF objects the loader returned (checked; copied into plain dicts)."""
    loaded_rev = _loaded_revision(loader, pid, collection, revision)
    histology = _histology_level(loader, pid, min_histology)
    channels = _normalise_channels(channels, _alf_raw_ind(loader, channels), pid)
    spikes = {k: np.asarray(v) for k, v in spikes.items()}
    clusters = _normalise_clusters(clusters)
    _check(pid, spikes, clusters, channels, collection)
    waveforms = load_waveforms(loader, one, eid, pid, collection, one_revision)
    if waveforms is not None:
        check_waveforms(pid, collection, waveforms, spikes, clusters['channels'].size, channels['rawInd'])
    prov = Provenance(pid=pid, eid=str(eid), probe=probe, spike_sorter=sorter, collection=collection,
                      revision=loaded_rev, histology=histology, model=_probe_model(one, pid),
                      waveforms='' if waveforms is None else WAVEFORM_VERSIONS[waveforms['version']], **_versions())
    return ProbeData(provenance=prov, spikes=spikes, clusters=clusters, channels=channels, waveforms=waveforms)


#: Provenance of each on-disk version of IBL's extracted waveforms (``WaveformsLoader.data_version``).
WAVEFORM_VERSIONS = {1: 'waveforms.* v1 (per cluster)', 2: 'waveforms.* v2 (flat)'}
#: Raw AP channels of a Neuropixels recording: IBL's neighbourhoods use it as the padding index.
RAW_AP_CHANNELS = 384
#: The attributes of IBL's ``waveforms`` object.
WAVEFORM_ATTRIBUTES = ('traces', 'templates', 'table', 'channels')


def load_waveforms(loader, one, eid: str, pid: str, collection: str, one_revision: str | None) -> dict | None:
    """IBL's extracted waveforms of the sorting through ``SpikeSortingLoader.raw_waveforms()``, or None.

    Returns
    -------
    dict or None
        ``traces``, ``templates``, ``table``, ``channels`` as ``WaveformsLoader`` holds them (``traces``
        memory-mapped) and ``version`` (1 per cluster, 2 flat); None when the collection has no
        ``waveforms`` object.

    Raises
    ------
    InvalidDataError
        Some of the four datasets missing, or unreadable.
    """
    names = [str(n) for n in one.list_datasets(eid, collection=collection, filename='waveforms.*')]
    if not names:
        return None
    present = {n.split('/')[-1].split('.')[1] for n in names}
    missing = [a for a in WAVEFORM_ATTRIBUTES if a not in present]
    if missing:
        raise InvalidDataError(f'insertion {pid}: {collection}/waveforms.{missing[0]} missing (the waveforms object '
                               f'has {", ".join(sorted(present))})')
    try:
        wl = loader.raw_waveforms(revision=one_revision)
    except Exception as e:  # noqa: BLE001 - the loader asserts, numpy and pyarrow raise many kinds
        raise InvalidDataError(f'insertion {pid}: {collection}/waveforms.*: cannot be read ({type(e).__name__}: '
                               f'{str(e)[:120]})') from None
    return {'traces': wl.traces, 'templates': np.asarray(wl.templates), 'table': wl.df_wav,
            'channels': np.asarray(wl.channels), 'version': int(wl.data_version)}


def check_waveforms(pid: str, collection: str, waveforms: dict, spikes: dict, n_clusters: int,
                    raw_ind: np.ndarray) -> None:
    """Check IBL's waveforms like every ALF object: shapes agree, spikes exist, channels on the probe.

    Normal in IBL's writer and not errors: neighbourhood channels equal to the raw channel count
    (padding beyond the probe ends, NaN traces), and in the per-cluster layout NaN table rows with
    ``-1`` channel rows and zero traces (clusters with fewer waveforms than the maximum).

    Raises
    ------
    InvalidDataError
        One line naming the dataset.
    """
    name = f'insertion {pid}: {collection}/waveforms'
    traces, table, channels, templates = (waveforms[k] for k in ('traces', 'table', 'channels', 'templates'))
    rows = int(np.prod(traces.shape[:-2])) if traces.ndim in (3, 4) else -1
    if rows != len(table) or channels.ndim != 2 or channels.shape != (len(table), traces.shape[-2]):
        raise InvalidDataError(f'{name}.traces has shape {traces.shape}, waveforms.table {len(table)} rows, '
                               f'waveforms.channels shape {channels.shape}: they do not agree')
    if templates.ndim != 3 or templates.shape[1:] != traces.shape[-2:]:
        raise InvalidDataError(f'{name}.templates has shape {templates.shape}, waveforms.traces {traces.shape}')
    valid = waveform_rows(waveforms)
    clu = table['cluster'].to_numpy()[valid].astype(np.int64)
    if clu.size and (clu.min() < 0 or clu.max() >= n_clusters):
        raise InvalidDataError(f'{name}.table refers to cluster {int(clu.max() if clu.min() >= 0 else clu.min())} '
                               f'but there are {n_clusters} clusters')
    if templates.shape[0] != np.unique(clu).size:
        raise InvalidDataError(f'{name}.templates has {templates.shape[0]} rows for {np.unique(clu).size} clusters '
                               'in waveforms.table')
    samples = table['sample'].to_numpy()[valid].astype(np.int64)
    if 'samples' not in spikes:
        raise InvalidDataError(f'{name}: spikes.samples is needed to match the waveforms to spikes')
    key = np.asarray(spikes['clusters']).astype(np.int64) * (2 ** 40) + np.asarray(spikes['samples']).astype(np.int64)
    found = np.isin(clu * (2 ** 40) + samples, key)
    if not found.all():
        raise InvalidDataError(f'{name}.table: {int((~found).sum())} waveforms (first: cluster {clu[~found][0]}, '
                               f'sample {samples[~found][0]}) match no spike in spikes.samples/spikes.clusters')
    ch = channels[valid]
    pad = max(int(np.max(raw_ind, initial=-1)) + 1, RAW_AP_CHANNELS)  # IBL pads with the raw channel count
    if ch.size and (ch.min() < 0 or ch.max() > pad):
        raise InvalidDataError(f'{name}.channels refers to channel {int(ch.max() if ch.min() >= 0 else ch.min())} '
                               f'outside the probe ({pad} raw channels)')



def _resolve_insertion(one, pid: str | None, eid: str | None, probe: str | None) -> tuple[str, str, str]:
    """The (pid, eid, probe name) of an insertion given by its pid, or by its session and probe name.

    Raises
    ------
    NotFoundError
        Neither a pid nor both an eid and a probe name, an unknown pid, or no such probe in the session.
    """
    if pid is not None:
        eid, probe = resolve_pid(one, pid)
    elif eid is None or probe is None:
        raise NotFoundError('give a pid, or an eid and a probe name')
    else:
        eid = str(eid)
        names = {n: p for p, n in session_probes(one, eid)}
        if probe not in names:
            raise NotFoundError(f'session {eid}: no probe named {probe!r} (insertions: {", ".join(names) or "none"})')
        pid = names[probe]
    return str(pid), eid, probe


def _fetch_collection(one, eid: str, pid: str, collection: str, one_revision: str | None,
                      check_hash: bool) -> None:
    """Download the collection (online ONE), checking each download, and refuse any unreadable file.

    ONE loads ``.npy`` files with ``allow_pickle=True``: a file holding Python objects would run code.
    Every file is checked before anything is loaded.

    Raises
    ------
    InvalidDataError
        Naming the first unreadable file and why.
    NetworkError, NotFoundError
        The download failed; the files cannot be located.
    """
    if not getattr(one, 'offline', True):
        _download_checked(one, eid, pid, collection, one_revision, check_hash)
    bad = corrupt_datasets(one, eid, collection, one_revision, pid=pid)
    if bad:
        raise InvalidDataError(f'insertion {pid}: {bad[0][0]}: {bad[0][1]}')


def _download_checked(one, eid: str, pid: str, collection: str, one_revision: str | None, check_hash: bool) -> None:
    """Have ONE download a collection, and check every file it downloads against its dataset record.

    ONE (3.6) writes a download straight to its final path and checks neither its size nor its md5:
    a connection cut mid-file leaves a short file that looks complete. Each file downloaded now is
    checked here, size and md5; a file already in the cache, its size (and md5 with ``check_hash``).
    A file that fails is removed and downloaded once more; failing twice is an error, and the file
    is removed, never left looking complete.
    """
    root = _session_path(one, eid, f'insertion {pid}', collection)
    records = _dataset_records(one, eid, collection)
    for _ in range(2):
        fresh = {rel for rel, rec in records.items() if _size_differs(root / rel, rec)}
        paths = _download(one, eid, pid, root, collection, one_revision, check_hash, records, fresh)
        failed = _failed_downloads(root, paths, records, set(records) if check_hash else fresh)
        for rel, _, _ in failed:
            (root / rel).unlink(missing_ok=True)
        if not failed:
            return
    rel, error, why = failed[0]
    raise error(f'insertion {pid}: {rel}: {why}, twice (from {_dataset_url(one, records[rel])}); '
                f'the file was removed from the cache')


def _session_path(one, eid: str, subject: str, collection: str) -> Path:
    """The session folder in the ONE cache, where ``collection`` is (downloaded) and checked.

    Raises
    ------
    NotFoundError
        ONE knows no path for the session.
    NetworkError
        ONE asked Alyx, which failed.
    """
    try:
        path = one.eid2path(eid)
    except Exception as e:  # noqa: BLE001 - ONE raises several kinds for an unknown session
        why = network_failure(e)
        if why is not None:
            raise NetworkError(f'{subject}: cannot locate {collection}: {why}') from e
        raise NotFoundError(f'{subject}: cannot locate {collection}: no path for session {eid} '
                            f'({type(e).__name__}: {_one_line(e, 100)})') from e
    if not path:
        raise NotFoundError(f'{subject}: cannot locate {collection}: no path for session {eid} in the ONE cache')
    return Path(path)


def _dataset_records(one, eid: str, collection: str) -> dict:
    """The collection's dataset records (every revision) by path in the session: ``file_size``, ``hash``."""
    dsets = one.list_datasets(eid, collection=collection, details=True, keep_eid_index=True)
    return {row['rel_path']: row for _, row in dsets.iterrows()}


def _known(value) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value) and value != ''


def _size_differs(path: Path, record) -> bool:
    """The file is missing or its size is not its record's: ONE will download it."""
    if not path.is_file():
        return True
    return _known(record['file_size']) and path.stat().st_size != int(record['file_size'])


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def _collection_url(one, root: Path, collection: str) -> str:
    """The file server URL of a collection folder, or '' if ONE cannot say."""
    try:
        return one.alyx.rel_path2url(f'{root.relative_to(one.cache_dir).as_posix()}/{collection}')
    except Exception:  # noqa: BLE001 - only for a message
        return ''


def _dataset_url(one, record) -> str:
    """The file server URL of a dataset record (ONE's own construction), or '' if ONE cannot say."""
    try:
        return str(one.record2url(record))
    except Exception:  # noqa: BLE001 - only for a message
        return ''


def _download(one, eid: str, pid: str, root: Path, collection: str, one_revision: str | None, check_hash: bool,
              records: dict, fresh: set) -> list[Path]:
    """ONE's download of the collection (:func:`_collection_paths`); a network failure removes the partial files.

    Raises
    ------
    NetworkError
        Naming the first file left incomplete, or the collection.
    NotFoundError
        The file server does not have a file that Alyx lists (HTTP 404).
    """
    import urllib.error

    try:
        return _collection_paths(one, eid, f'insertion {pid}', collection, one_revision, check_hash)
    except AlfNwbError:
        raise
    except Exception as e:  # noqa: BLE001 - a 404 and network failures are ours; the unknown ones pass on
        if isinstance(e, urllib.error.HTTPError) and e.code == 404:
            raise NotFoundError(f'insertion {pid}: {collection}: a file that Alyx lists is not on the file server '
                                f'(HTTP 404 {e.url})') from e
        why = network_failure(e)
        if why is None:
            raise
        partial = [rel for rel in sorted(fresh) if (root / rel).exists() and _size_differs(root / rel, records[rel])]
        for rel in partial:
            (root / rel).unlink()
        where = f'{partial[0]} ({_dataset_url(one, records[partial[0]])})' if partial else collection
        if not partial and '://' not in why:  # name the server
            where += f' ({_collection_url(one, root, collection)})'
        raise NetworkError(f'insertion {pid}: download of {where} failed: {why}') from e


def _failed_downloads(root: Path, paths: list[Path], records: dict, md5_of: set) -> list[tuple]:
    """(path in the session, error class, why) of each file whose size, or md5 if asked, is not its record's."""
    out = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        rec = records.get(rel)
        if rec is None:
            continue
        size = path.stat().st_size
        if _known(rec['file_size']) and size != int(rec['file_size']):
            out.append((rel, NetworkError, f'download incomplete: {size} of {int(rec["file_size"])} bytes'))
        elif rel in md5_of and _known(rec['hash']) and (md5 := _md5(path)) != rec['hash']:
            out.append((rel, InvalidDataError, f'md5 {md5} differs from the database record {rec["hash"]}'))
    return out


def _load_spike_sorting(loader, one, eid: str, pid: str, sorter: str, collection: str, one_revision: str | None,
                        check_hash: bool) -> tuple[dict, dict, dict]:
    """``SpikeSortingLoader.load_spike_sorting``, with read failures turned into :class:`InvalidDataError`.

    Returns
    -------
    tuple of dict
        spikes, clusters and channels, as the loader returns them.
    """
    sorter_arg = '' if sorter == KILOSORT25 else sorter
    try:
        return loader.load_spike_sorting(
            spike_sorter=sorter_arg, revision=one_revision, dataset_types=EXTRA_DATASETS, check_hash=check_hash)
    except AlfNwbError:
        raise
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
        why = network_failure(e)  # requests' errors are OSErrors: not a broken file
        if why is not None:
            raise NetworkError(f'insertion {pid}: {collection}: {why}') from e
        # name the broken file: the loader's own message often does not
        bad = corrupt_datasets(one, eid, collection, one_revision, pid=pid)
        if bad:
            name, why = bad[0]
            raise InvalidDataError(f'insertion {pid}: {name}: {why}') from None
        raise InvalidDataError(f'insertion {pid}: cannot read {collection} ({e})') from None


def _loaded_revision(loader, pid: str, collection: str, revision: str | None) -> str:
    """The revision the loader actually read (``''``: unrevisioned), checked against what was asked.

    Raises
    ------
    SorterNotFoundError
        ``SpikeSortingLoader`` fell back to another collection or revision (it does so silently).
    """
    loaded_coll = loader.collection
    if loaded_coll != collection:  # SpikeSortingLoader falls back silently; we do not
        raise SorterNotFoundError(f'insertion {pid}: asked for {collection}, the loader found {loaded_coll}')
    files = loader.files.get('spikes') or []
    loaded_rev = (files[0].revision or '') if files else ''
    if revision not in (None, 'default') and loaded_rev != ('' if revision in (UNREVISIONED, '') else revision):
        raise SorterNotFoundError(f'insertion {pid}: asked for revision {revision!r} of {collection}, '
                                  f'found {loaded_rev or UNREVISIONED}')
    return loaded_rev


def _histology_level(loader, pid: str, min_histology: str) -> str:
    """The histology level the loader resolved, refused (:class:`HistologyError`) if below ``min_histology``."""
    histology = _level(loader.histology)
    if HISTOLOGY_LEVELS.index(histology) > HISTOLOGY_LEVELS.index(min_histology):
        raise HistologyError(f'insertion {pid}: histology level is {histology!r}, below the required '
                             f'{min_histology!r} (channels.brainLocationIds_ccf_2017 / Alyx trajectories)')
    return histology


def _alf_raw_ind(loader, channels: dict) -> dict | None:
    """``channels.rawInd`` read from the ALF files when the loader's channels lack it, else None."""
    if 'rawInd' not in channels and loader.files.get('channels'):
        from one.alf import io as alfio
        return alfio.load_object(loader.files['channels'], attribute='rawInd')
    return None


def _normalise_clusters(clusters: dict) -> dict:
    """Clusters with ``uuids`` as a str array and single-channel templates given back their channel axis."""
    clusters = dict(clusters)
    if 'uuids' in clusters:
        u = clusters['uuids']
        clusters['uuids'] = np.asarray(u['uuids'] if hasattr(u, 'columns') else u).astype(str)
    # ONE flattens (n, 1) arrays: templates on a single channel come back as (n,) and (n, samples)
    nc = np.asarray(clusters.get('channels', [])).size
    wfc = clusters.get('waveformsChannels')
    if wfc is not None and np.asarray(wfc).ndim == 1 and np.asarray(wfc).size == nc:
        clusters['waveformsChannels'] = np.asarray(wfc).reshape(nc, 1)
        wf = clusters.get('waveforms')
        if wf is not None and np.asarray(wf).ndim == 2 and np.asarray(wf).shape[0] == nc:
            clusters['waveforms'] = np.asarray(wf)[:, :, None]
    return clusters


def _probe_model(one, pid: str) -> str:
    """The probe model of an insertion from the cache's insertions table (``''`` if unknown)."""
    if (table := insertions_table(one)) is not None and 'model' in table:
        sel = table[table['id'] == pid]
        return str(sel['model'].iloc[0]) if len(sel) else ''
    return ''


def _check_file(path: Path) -> str | None:
    """Why a .npy or .pqt file cannot be read (truncated, corrupt, pickled), or None if it can."""
    try:
        if path.suffix == '.npy':
            with open(path, 'rb') as f:
                fmt = np.lib.format
                version = fmt.read_magic(f)
                reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if reader is None:
                    return None  # a newer format: numpy's own reader decides
                shape, fortran, dtype = reader(f)
                if dtype.hasobject:
                    return 'holds Python objects (pickle): refused, only plain arrays are loaded'
                expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            size = path.stat().st_size
            if size != expected:
                return f'truncated or corrupt: {size} bytes, the header says {expected}'
        elif path.suffix in ('.pqt', '.parquet'):
            import pyarrow.parquet as pq

            pq.read_metadata(path)
    except Exception as e:  # noqa: BLE001 - any failure to parse means a broken file
        return f'truncated or corrupt ({type(e).__name__}: {str(e)[:120]})'
    return None


def corrupt_datasets(one, eid: str, collection: str, revision: str | None = None, *,
                     pid: str | None = None) -> list[tuple[str, str]]:
    """The datasets of a collection (and revision) that cannot be read, with the reason.

    Parameters
    ----------
    one : one.api.One
    eid : str
        Session id.
    collection : str
        E.g. ``alf/probe00/pykilosort``.
    revision : str, optional
        As ONE takes it: None for the default revision, else the last revision up to this one.
    pid : str, optional
        The insertion, named in the errors.

    Returns
    -------
    list of (str, str)
        (``collection/[#revision#/]name``, reason) for every unreadable ``.npy`` / ``.pqt`` file
        among those ONE loads (its own choice of files: ``load_collection``, which downloads what is
        missing when ONE is online).

    Raises
    ------
    NotFoundError
        The files cannot be located (no path for the session, no file of the collection on disk):
        nothing is ever loaded unchecked.
    NetworkError
        Locating the files needed Alyx or the file server, which failed.
    """
    subject = f'insertion {pid}' if pid else f'session {eid}'
    root = _session_path(one, eid, subject, collection)
    with _network_errors(subject):
        paths = _collection_paths(one, eid, subject, collection, revision, check_hash=False)
    out = []
    for path in paths:
        why = _check_file(path) if path.suffix in ('.npy', '.pqt', '.parquet') else None
        if why:
            out.append((path.relative_to(root).as_posix(), why))
    return out


def _collection_paths(one, eid: str, subject: str, collection: str, revision: str | None,
                      check_hash: bool) -> list[Path]:
    """The files of a collection that ONE loads for this revision (downloaded if ONE is online and lacks them).

    Object by object, with ``load_object`` as ``SpikeSortingLoader`` calls it, so that these are the
    files it reads. (ONE 3.6's ``load_collection`` cannot take a revision: it passes it on as the
    collection filter.)

    Raises
    ------
    NotFoundError
        ONE finds no file of the collection.
    """
    from one.alf.exceptions import ALFObjectNotFound
    from one.alf.path import filename_parts

    names = one.list_datasets(eid, collection=collection)
    objects = sorted({filename_parts(Path(str(n)).name, assert_valid=False)[1] for n in names} - {None})
    paths: list[Path] = []
    for obj in objects:
        try:
            paths += one.load_object(eid, obj, collection=collection, revision=revision, download_only=True,
                                     check_hash=check_hash)
        except ALFObjectNotFound:  # not in this revision: the loader does not read it either
            continue
    if not paths:
        raise NotFoundError(f'{subject}: cannot locate {collection}: ONE finds no file of it'
                            + (f' (revision {revision})' if revision else ''))
    return [Path(p) for p in paths]


@_online
def raw_ap_file(one, probe: ProbeData) -> Path:
    """The local raw AP band of a probe (``raw_ephys_data/<probe>/*.ap.cbin`` with its ``.ch`` and ``.meta``).

    Parameters
    ----------
    one : one.api.One
    probe : ProbeData
        The loaded probe (its eid and name locate the files).

    Returns
    -------
    pathlib.Path
        The ``.cbin`` file; ONE downloads the three files if it can and they are missing.
    """
    prov = probe.provenance
    collection = f'raw_ephys_data/{prov.probe}'
    names = one.list_datasets(prov.eid, collection=collection, filename='*.ap.*')
    names = [str(n) for n in (names.tolist() if hasattr(names, 'tolist') else names)]
    wanted = {ext: [n for n in names if n.endswith(f'.ap.{ext}')] for ext in ('cbin', 'ch', 'meta')}
    missing = [ext for ext, found in wanted.items() if len(found) != 1]
    if missing:
        raise NotFoundError(f'insertion {prov.pid}: raw data {collection}/*.ap.{"/".join(missing)} '
                            f'not found ({"several" if any(wanted[m] for m in missing) else "none"} in the cache)')
    try:
        paths = one.load_datasets(prov.eid, [wanted[ext][0] for ext in ('cbin', 'ch', 'meta')],
                                  download_only=True, check_hash=False)[0]
    except Exception as exc:  # noqa: BLE001 - ONE raises several types for missing/unreachable files
        why = network_failure(exc)
        if why is not None:
            raise NetworkError(f'insertion {prov.pid}: raw data {collection}: {why}') from exc
        raise NotFoundError(f'insertion {prov.pid}: raw data {collection}: {exc}') from exc
    if any(p is None or not Path(p).exists() for p in paths):
        raise NotFoundError(f'insertion {prov.pid}: raw data {collection}/*.ap.cbin is listed but not on disk')
    return Path(paths[0])


@_online
def load_session(one, eid: str | None = None, *, pid: str | None = None, probe: str | None = None,
                 **kwargs: Any) -> SessionData:
    """Load a session's metadata and one or all of its probes.

    Parameters
    ----------
    one : one.api.One
    eid : str, optional
        Session id: all its probes, or only ``probe``.
    pid : str, optional
        A single insertion instead of a session.
    probe : str, optional
        With ``eid``: the one probe to load.
    **kwargs
        Passed to :func:`load_probe` (``spike_sorter``, ``revision``, ``atlas``, ``min_histology``).

    Returns
    -------
    SessionData
    """
    if pid is not None:
        eid, _ = resolve_pid(one, pid)
        with _network_errors(f'insertion {pid}'):  # the insertion asked for, not its session
            session = _session_metadata(one, eid)
        session.probes = [load_probe(one, pid, **kwargs)]
        return session
    if eid is None:
        raise NotFoundError('give a pid or an eid')
    session = session_metadata(one, eid)
    probes = session_probes(one, eid)
    if probe is not None:
        if probe not in [n for _, n in probes]:
            raise NotFoundError(f'session {eid}: no probe named {probe!r} (insertions: {", ".join(n for _, n in probes)})')
        probes = [(p, n) for p, n in probes if n == probe]
    session.probes = [load_probe(one, p, **kwargs) for p, _ in probes]
    return session


def _session_lock(one, eid: str, what: str):
    """A lock, waited for, on a session's files of one ONE cache (in the temporary folder: always writable)."""
    import tempfile

    from .locks import waiting_lock

    cache = hashlib.sha1(str(Path(one.cache_dir).resolve()).encode()).hexdigest()[:12]
    return waiting_lock(Path(tempfile.gettempdir()) / f'.alfnwb-{cache}-{eid}.{what}.lock', f'session {eid}')


def load_trials(one, session: SessionData) -> SessionData:
    """Add a session's trials, as brainbox's ``SessionLoader.load_trials()`` loads them, to ``session``.

    Sets ``session.trials`` (the loader's DataFrame, unchanged), ``session.trials_collection`` and
    ``session.trials_revision`` (the revision of the files actually loaded, ``''`` unrevisioned), and
    records both in every probe's provenance. A session without a readable trials object keeps
    ``trials`` None, with a :class:`~alfnwb.errors.DataWarning`.

    Parameters
    ----------
    one : one.api.One
    session : SessionData
        From :func:`load_session`.

    Returns
    -------
    SessionData
        The same object.
    """
    import warnings

    from brainbox.io.one import SessionLoader
    from one.alf.exceptions import ALFError
    from one.alf.path import ALFPath

    eid, wildcards = session.eid, one.wildcards
    fast_md5_checks()
    try:
        loader = SessionLoader(one=one, eid=eid)
        collection = trials_collection(loader)
        with _session_lock(one, eid, 'trials'):  # another worker may be downloading them for another probe
            loader.load_trials(collection=collection)
        files = one.load_object(eid, 'trials', collection=collection, download_only=True,
                                check_hash=False)  # the loader just checked them
    except (ALFError, ValueError, OSError) as e:
        warnings.warn(DataWarning(f'session {eid}: no trials loaded (alf/_ibl_trials.*: {type(e).__name__}: '
                                  f'{str(e).splitlines()[0] if str(e) else "not found"}); exported without trials'),
                      stacklevel=2)
        return session
    finally:  # load_trials sets one.wildcards = False and restores it only when it succeeds
        one.wildcards = wildcards
    revisions = sorted({ALFPath(f).revision or '' for f in files if f is not None})
    session.trials = loader.trials
    session.trials_collection = collection
    session.trials_revision = ','.join(r for r in revisions if r)
    for probe in session.probes:
        probe.provenance.trials_collection = session.trials_collection
        probe.provenance.trials_revision = session.trials_revision
    return session
