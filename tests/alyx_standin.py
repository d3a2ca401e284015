"""A loopback stand-in for Alyx and the IBL file server, over real HTTP, for the remote tests.

It serves a synthetic ONE cache (:func:`alfnwb.synthetic.write_cache`) the way the IBL database and
its file server do, so that ONE's own client, download and cache code run against it unchanged. It
holds only what the server side holds: session, dataset, insertion and trajectory records, and the
files. It listens on 127.0.0.1 only, on a free port, served from a background thread (and one
thread per request).

Alyx (JSON; every request but ``/auth-token`` needs the header ``Authorization: Token <token>``,
else 403 ``Invalid token.`` as Alyx answers):

- ``POST /auth-token``: form ``username``, ``password`` -> ``{"token": ...}``; wrong credentials:
  400, as Alyx.
- ``GET /api/schema``: the OpenAPI description of the endpoints below (ONE checks every query
  against it).
- ``GET /sessions/<eid>``: a session with its datasets (``data_dataset_session_related``:
  ``data_url``, ``file_size``, ``hash`` = the files' real md5); ``GET /sessions?id=`` or
  ``?django=pk__in,(...)``: session lists.
- ``GET /insertions/<pid>``, ``/insertions?session=&name=``: insertion records (``json.xyz_picks``,
  ``json.extended_qc``, ``session_info``).
- ``GET /trajectories?session=&probe=&provenance=``: trajectory records (the alignments).

File server (no authentication, like the public IBL server): ``GET /files/<session path>/<rel path
with the dataset uuid>``, e.g. ``/files/lab/Subjects/S/2023-03-14/001/alf/probe00/spikes.times.<uuid>.npy``.
ONE builds that URL itself from its ``HTTP_DATA_SERVER`` parameter (:func:`setup_one`).

Faults, set on the instance by a test: ``cut`` (file name part -> how many times the download is cut
after half the bytes), ``corrupt`` (file name parts served with one byte changed, same size),
``stall`` (path prefix whose requests are accepted and never answered, until :meth:`stop`) and
``fail`` (path prefix -> HTTP status). ``requests`` logs every request as (method, path, status).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd

from alfnwb.synthetic import openapi_schema
from alfnwb.synthetic.rest import alyx_records

#: Longest a stalled request is held (s): far beyond the clients' timeouts, and released by stop().
STALL_S = 30.0
UUID_RE = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def setup_one(base_url: str, data_server: str) -> None:
    """What a user of a database other than the public IBL one does once (``ONE.setup``): store
    the database's file server (ONE's ``HTTP_DATA_SERVER`` parameter) in ONE's parameters."""
    import one.params

    par = one.params.get(client=base_url, silent=True)
    one.params.save(par.set('HTTP_DATA_SERVER', data_server), base_url)


def _schema() -> dict:
    """The synthetic REST cache's OpenAPI description plus the sessions endpoints (list and read)."""
    schema = openapi_schema()
    query = [{'in': 'query', 'name': n, 'schema': {'type': 'string'}} for n in ('id', 'django', 'subject', 'lab')]
    schema['paths'].update({
        '/sessions': {'get': {'operationId': 'sessions_list', 'parameters': query}},
        '/sessions/{id}': {'get': {'operationId': 'sessions_read', 'parameters': [
            {'in': 'path', 'name': 'id', 'required': True, 'schema': {'type': 'string'}}]}},
    })
    for op in ('/insertions', '/trajectories'):
        schema['paths'][op]['get']['parameters'].append({'in': 'query', 'name': 'django', 'schema': {}})
    return schema


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # s: a client that stops reading never holds a server thread for long

    def do_GET(self):
        self.server.standin.answer(self, 'GET')

    def do_POST(self):
        self.server.standin.answer(self, 'POST')

    def log_message(self, format, *args):  # the stand-in keeps its own log (AlyxStandIn.requests)
        pass


class AlyxStandIn:
    """Alyx and its file server for a synthetic cache, on ``http://127.0.0.1:<free port>``.

    Parameters
    ----------
    synth : alfnwb.synthetic.SynthCache
        The cache to serve (read only).
    username, password : str
        The one account that ``/auth-token`` accepts.
    """

    def __init__(self, synth, username: str = 'alfnwb', password: str = 'neuropixel'):
        self.username, self.password = username, password
        self.token = secrets.token_hex(20)
        self.requests: list[tuple[str, str, int]] = []
        self.cut: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.stall: str | None = None
        self.fail: dict[str, int] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        self._server.standin = self
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        self.data_url = f'{self.url}/files'
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
                                        daemon=True)
        self._load(synth)

    # ---- what the server holds -------------------------------------------------------------------
    def _load(self, synth) -> None:
        records = alyx_records(synth)
        self.insertions = records['insertions']
        self.trajectories = records['trajectories']
        datasets = pd.read_parquet(Path(synth.cache_dir) / 'datasets.pqt').reset_index()
        self.files: dict[str, Path] = {}  # URL path -> local file
        self.sessions = {}
        for s in synth.sessions:
            rel = s.path.relative_to(synth.cache_dir).as_posix()
            rows = datasets[datasets['eid'].astype(str) == s.eid]
            dsets = [self._dataset(s, rel, row) for row in rows.itertuples()]
            self.sessions[s.eid] = {
                'id': s.eid, 'url': f'{self.url}/sessions/{s.eid}', 'subject': s.subject, 'lab': s.lab,
                'number': s.number, 'start_time': f'{s.date.isoformat()}T12:00:00',
                'task_protocol': '_iblrig_tasks_ephysChoiceWorld6.6.2', 'projects': ['ibl_neuropixel_brainwide_01'],
                'data_dataset_session_related': dsets}
        for ins in self.insertions:  # Alyx joins the session into each insertion record
            ses = self.sessions[ins['session']]
            ins['session_info'] = {k: v for k, v in ses.items() if k != 'data_dataset_session_related'}

    def _dataset(self, session, session_rel: str, row) -> dict:
        """A dataset record of ``data_dataset_session_related``, and its file on the file server."""
        did = str(row.id)
        rel = Path(row.rel_path)
        stem, ext = rel.name.rsplit('.', 1)
        url_path = f'/files/{session_rel}/{(rel.parent / f"{stem}.{did}.{ext}").as_posix()}'
        self.files[url_path] = session.path / rel
        parts = rel.parent.as_posix().split('/')
        revision = parts[-1].strip('#') if parts[-1].startswith('#') else None
        return {'id': did, 'url': f'{self.url}/datasets/{did}', 'name': rel.name,
                'collection': '/'.join(p for p in parts if not p.startswith('#')), 'revision': revision,
                'data_url': f'{self.url}{url_path}', 'file_size': int(row.file_size), 'hash': row.hash,
                'default_revision': str(bool(row.default_revision)), 'qc': 'NOT_SET'}

    # ---- serving ---------------------------------------------------------------------------------
    def answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one request (called in the server's request threads)."""
        split = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(split.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query).items()}
        if self.stall and path.startswith(self.stall):
            self._log(method, path, 0)
            self._release.wait(STALL_S)  # accepted, never answered
            return
        status = next((code for prefix, code in self.fail.items() if path.startswith(prefix)), None)
        if status:
            return self._json(h, method, path, status, {'detail': 'Internal Server Error'})
        if path.startswith('/files/'):
            return self._file(h, method, path)
        if method == 'POST' and path == '/auth-token':
            return self._login(h, path)
        if h.headers.get('Authorization') != f'Token {self.token}':
            return self._json(h, method, path, 403, {'detail': 'Invalid token.'})
        found = self._rest(path, query) if method == 'GET' else None
        if found is None:
            return self._json(h, method, path, 404, {'detail': 'Not found.'})
        self._json(h, method, path, 200, found)

    def _rest(self, path: str, query: dict):
        """The JSON answer to a REST GET, or None (404)."""
        parts = path.strip('/').split('/')
        if parts == ['api', 'schema']:
            return _schema()
        tables = {'sessions': list(self.sessions.values()), 'insertions': self.insertions,
                  'trajectories': self.trajectories}
        if parts[0] not in tables or len(parts) > 2:
            return None
        records = tables[parts[0]]
        if len(parts) == 2:  # read by id
            return next((r for r in records if r['id'] == parts[1]), None)
        fields = {'probe': 'probe_name'}  # query parameter -> record field, where they differ
        for key, value in query.items():
            if key == 'django':
                ids = set(UUID_RE.findall(value))
                records = [r for r in records if r['id'] in ids]
            else:
                records = [r for r in records if str(r.get(fields.get(key, key))) == value]
        if parts[0] == 'sessions':  # the list omits the datasets, as Alyx's does
            records = [{k: v for k, v in r.items() if k != 'data_dataset_session_related'} for r in records]
        return records

    def _login(self, h: BaseHTTPRequestHandler, path: str) -> None:
        length = int(h.headers.get('Content-Length') or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(h.rfile.read(length).decode()).items()}
        if form.get('username') == self.username and form.get('password') == self.password:
            return self._json(h, 'POST', path, 200, {'token': self.token})
        self._json(h, 'POST', path, 400, {'non_field_errors': ['Unable to log in with provided credentials.']})

    def _file(self, h: BaseHTTPRequestHandler, method: str, path: str) -> None:
        local = self.files.get(path)
        if local is None:
            return self._json(h, method, path, 404, {'detail': 'Not found.'})
        data = local.read_bytes()
        name = Path(path).name
        if any(part in name for part in self.corrupt):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        cut = next((part for part, n in self.cut.items() if part in name and n > 0), None)
        self._log(method, path, 200)
        h.send_response(200)
        h.send_header('Content-Type', 'application/octet-stream')
        h.send_header('Content-Length', str(len(data)))
        h.end_headers()
        if cut is not None:
            with self._lock:
                self.cut[cut] -= 1
            h.wfile.write(data[:len(data) // 2])  # then the connection closes (HTTP/1.0)
            return
        h.wfile.write(data)

    def _json(self, h: BaseHTTPRequestHandler, method: str, path: str, status: int, body) -> None:
        self._log(method, path, status)
        raw = json.dumps(body).encode()
        h.send_response(status)
        h.send_header('Content-Type', 'application/json')
        h.send_header('Content-Length', str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    # ---- life cycle and what tests look at --------------------------------------------------------
    def file_requests(self) -> list[str]:
        """Paths of the files requested so far (each download is one request)."""
        with self._lock:
            return [p for _, p, _ in self.requests if p.startswith('/files/')]

    def start(self) -> AlyxStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release stalled requests, stop serving and close the socket (once; again does nothing)."""
        if self._release.is_set():
            return
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STALL_S)

    def __enter__(self) -> AlyxStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
