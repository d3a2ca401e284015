"""The remote path: a pid from an Alyx database over HTTP, with ONE's own client, downloads and cache.

Against a loopback stand-in of Alyx and the IBL file server (``alyx_standin.py``) serving the
synthetic cache: export and batch end to end, downloads that fail in each way a network fails,
credentials, and histology from the server's insertion and trajectory records.
"""

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alfnwb.cli import main
from alfnwb.errors import (AlfNwbError, HistologyWarning, InvalidDataError, NetworkError, NotFoundError)
from alfnwb.loading import load_probe
from alfnwb.readback import read_alf

from alyx_standin import AlyxStandIn, setup_one
from conftest import PAINT

#: Seconds ONE may wait for an answer in the tests of a silent server.
SHORT_TIMEOUT = '1'


@pytest.fixture
def alyx(synth):
    """The stand-in serving the session-wide synthetic cache, and ONE's parameters for it (its file server)."""
    with AlyxStandIn(synth) as server:
        setup_one(server.url, server.data_url)
        yield server


@pytest.fixture
def login(alyx, monkeypatch):
    """The credentials, as the command line takes them (environment)."""
    monkeypatch.setenv('ALYX_USERNAME', alyx.username)
    monkeypatch.setenv('ALYX_PASSWORD', alyx.password)


def _remote_one(alyx, cache_dir: Path):
    from one.api import ONE

    cache_dir.mkdir(parents=True, exist_ok=True)
    return ONE(base_url=alyx.url, username=alyx.username, password=alyx.password, cache_dir=cache_dir,
               mode='remote', silent=True)


def _export(alyx, pid: str, cache: Path, out: Path, *extra: str) -> int:
    cache.mkdir(parents=True, exist_ok=True)
    return main(['--quiet', 'export', '--pid', pid, '--base-url', alyx.url, '--cache-dir', str(cache),
                 '--extensions', 'none', '--output', str(out), *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'Traceback' not in err[0], err
    return err[0]


def test_export_by_pid_downloads_then_exports_and_downloads_nothing_again(alyx, login, synth, tmp_path, monkeypatch):
    p = synth.sessions[0].probes[0]  # iblsorter: its default revision #2024-05-06# is what is downloaded
    truth = p.default_sorting
    cache = tmp_path / 'one'
    assert _export(alyx, p.pid, cache, tmp_path / 'a.nwb') == 0
    got = [re.sub(r'\.[0-9a-f-]{36}\.', '.', Path(f).name) for f in alyx.file_requests()]  # without the uuids
    wanted = {f.name for f in (synth.sessions[0].path / truth.collection / f'#{truth.revision}#').iterdir()}
    trials = {f.name for f in (synth.sessions[0].path / 'alf').glob('_ibl_trials.*')}  # the session's task
    assert trials and len(got) == len(set(got)) and set(got) == wanted | trials  # each file once
    assert all(req[2] == 200 for req in alyx.requests)
    spikes, clusters, channels = read_alf(tmp_path / 'a.nwb')
    np.testing.assert_array_equal(spikes['times'], truth.spikes['times'])
    np.testing.assert_array_equal(channels['atlas_id'], p.channels['atlas_id'])
    # again, logged in by the stored token (no password): nothing downloaded
    monkeypatch.delenv('ALYX_PASSWORD')
    n = len(alyx.file_requests())
    assert _export(alyx, p.pid, cache, tmp_path / 'b.nwb') == 0
    assert len(alyx.file_requests()) == n
    assert [r for r in alyx.requests if r[1] == '/auth-token'] == [('POST', '/auth-token', 200)]
    np.testing.assert_array_equal(read_alf(tmp_path / 'b.nwb')[0]['times'], truth.spikes['times'])


def test_batch_workers_use_the_plans_database_and_mode(alyx, login, synth, tmp_path):
    s = synth.sessions[0]  # alf and no histology (the batch has no atlas for Alyx histology)
    (tmp_path / 'pids.txt').write_text('\n'.join(p.pid for p in s.probes) + '\n')
    cache, ds = tmp_path / 'one', tmp_path / 'ds'
    cache.mkdir()
    rc = main(['--quiet', 'batch', '--pids', str(tmp_path / 'pids.txt'), '--base-url', alyx.url, '--cache-dir',
               str(cache), '--workers', '2', '--dandiset-dir', str(ds), '--no-validate', '--extensions', 'none'])
    m = pd.read_parquet(ds / '.alfnwb' / 'manifest.parquet').set_index('key')
    assert rc == 0, m['error'].tolist()
    assert set(m.index) == {p.pid for p in s.probes} and set(m['status']) == {'done'}
    # an empty cache: every file came over HTTP, once, for both insertions
    files = alyx.file_requests()
    sorting = [f for f in files if re.search('/alf/probe0./', f)]
    assert len(files) == len(set(files)) and {re.search('/alf/(probe0.)/', f)[1] for f in sorting} == {
        'probe00', 'probe01'}
    assert all('/alf/_ibl_trials.' in f for f in set(files) - set(sorting))  # and the session's trials
    for p in s.probes:
        nwb = ds / m.loc[p.pid, 'path']
        np.testing.assert_array_equal(read_alf(nwb)[0]['times'], p.default_sorting.spikes['times'])


def test_cut_download_is_downloaded_again(alyx, synth, tmp_path):
    p = synth.sessions[0].probes[1]
    alyx.cut = {'spikes.times': 1}  # the first download stops after half the bytes
    d = load_probe(_remote_one(alyx, tmp_path / 'one'), p.pid)
    np.testing.assert_array_equal(d.spikes['times'], p.default_sorting.spikes['times'])
    assert sum('spikes.times' in f for f in alyx.file_requests()) == 2


def test_download_cut_every_time_fails_and_leaves_no_partial_file(alyx, login, synth, tmp_path, capsys):
    p = synth.sessions[0].probes[1]
    alyx.cut = {'spikes.times': 10}
    cache, out = tmp_path / 'one', tmp_path / 'p.nwb'
    assert _export(alyx, p.pid, cache, out) == NetworkError.exit_code
    err = _error_line(capsys)
    assert err.startswith(f'alfnwb: error: insertion {p.pid}: alf/probe01/pykilosort/spikes.times.npy: download '
                          f'incomplete: ')
    assert f'{alyx.data_url}/' in err and 'removed' in err
    assert not out.exists() and not list(cache.rglob('spikes.times*'))
    alyx.cut = {}  # the server recovers: the next run completes
    assert _export(alyx, p.pid, cache, out) == 0
    np.testing.assert_array_equal(read_alf(out)[0]['times'], p.default_sorting.spikes['times'])


def test_file_that_differs_from_its_md5_is_refused_and_removed(alyx, login, synth, tmp_path, capsys):
    p = synth.sessions[0].probes[1]
    alyx.corrupt = {'clusters.depths'}  # same size, one byte changed
    cache, out = tmp_path / 'one', tmp_path / 'p.nwb'
    assert _export(alyx, p.pid, cache, out) == InvalidDataError.exit_code
    err = _error_line(capsys)
    assert err.startswith(f'alfnwb: error: insertion {p.pid}: alf/probe01/pykilosort/clusters.depths.npy: md5 ')
    assert 'differs from the database record' in err and f'{alyx.data_url}/' in err
    assert not out.exists() and not list(cache.rglob('clusters.depths*'))
    assert sum('clusters.depths' in f for f in alyx.file_requests()) == 2


def test_wrong_password_is_one_line_and_writes_nothing(alyx, synth, tmp_path, monkeypatch, capsys):
    p = synth.sessions[0].probes[1]
    monkeypatch.setenv('ALYX_USERNAME', alyx.username)
    monkeypatch.setenv('ALYX_PASSWORD', 'not-the-password')
    out = tmp_path / 'p.nwb'
    assert _export(alyx, p.pid, tmp_path / 'one', out) == NetworkError.exit_code
    err = _error_line(capsys)
    assert err.startswith(f'alfnwb: error: Alyx {alyx.url}: {alyx.url}/auth-token: credentials refused (HTTP 400)')
    assert 'check the username and password' in err and not out.exists()
    assert alyx.file_requests() == []


def test_revoked_token_names_the_insertion(alyx, synth, tmp_path):
    p = synth.sessions[0].probes[1]
    one = _remote_one(alyx, tmp_path / 'one')
    alyx.token = 'revoked'  # the stored token no longer works, and ONE has no password to get another
    with pytest.warns(UserWarning, match='No password'):  # ONE's own, as it tries to log in again
        with pytest.raises(NetworkError, match=f'^insertion {p.pid}: .*auth-token: credentials refused'):
            load_probe(one, p.pid)


@pytest.mark.parametrize('stalled', ['/files/', '/sessions/'])
def test_server_that_stops_answering_times_out(alyx, login, synth, tmp_path, monkeypatch, capsys, stalled):
    import socket

    import one.webclient
    import requests

    p = synth.sessions[0].probes[1]
    monkeypatch.setenv('ALFNWB_HTTP_TIMEOUT', SHORT_TIMEOUT)
    alyx.stall = stalled  # accepted, never answered (the login, insertion and session list still are)
    cache, out = tmp_path / 'one', tmp_path / 'p.nwb'
    t0 = time.perf_counter()
    assert _export(alyx, p.pid, cache, out) == NetworkError.exit_code
    assert time.perf_counter() - t0 < 20
    err = _error_line(capsys)
    assert err.startswith(f'alfnwb: error: insertion {p.pid}: ') and 'no answer within 1 s' in err
    assert (f'{alyx.data_url}/' if stalled == '/files/' else f'{alyx.url}/sessions/{p.eid}') in err
    assert not out.exists() and not [f for f in cache.rglob('*.npy')]
    # the timeouts are gone once alfnwb returns
    assert one.webclient.requests is requests and socket.getdefaulttimeout() is None


def test_server_errors_and_unreachable_are_not_not_found(alyx, synth, tmp_path):
    p = synth.sessions[0].probes[1]
    one = _remote_one(alyx, tmp_path / 'one')
    alyx.fail = {'/insertions/': 500}
    with pytest.raises(NetworkError, match=f'^insertion {p.pid}: {alyx.url}/insertions/{p.pid}: server error '
                                           r'\(HTTP 500\)$'):
        load_probe(one, p.pid)
    alyx.fail = {}
    unknown = '00000000-0000-4000-8000-000000000000'
    with pytest.raises(NotFoundError, match=f'insertion {unknown}: not found'):  # HTTP 404: truly absent
        load_probe(one, unknown)
    alyx.stop()
    with pytest.raises(NetworkError, match=f'^insertion {p.pid}: {alyx.url}/insertions/{p.pid}: cannot connect'):
        load_probe(one, p.pid)


def test_file_server_errors(alyx, synth, tmp_path):
    p = synth.sessions[0].probes[1]
    alyx.fail = {'/files/': 500}
    with pytest.raises(NetworkError, match=f'^insertion {p.pid}: download of alf/probe01/pykilosort failed: '
                                           f'{alyx.data_url}/.*: server error \\(HTTP 500\\)$'):
        load_probe(_remote_one(alyx, tmp_path / 'a'), p.pid)
    alyx.fail = {'/files/': 404}
    with pytest.raises(NotFoundError, match=f'^insertion {p.pid}: alf/probe01/pykilosort: a file that Alyx lists '
                                            f'is not on the file server \\(HTTP 404 {alyx.data_url}/'):
        load_probe(_remote_one(alyx, tmp_path / 'b'), p.pid)


@pytest.mark.parametrize('level', ['resolved', 'aligned', 'traced'])
def test_alyx_histology_from_the_servers_records(alyx, synth, one_alyx, painted_atlas, tmp_path, level):
    from iblatlas.regions import BrainRegions

    p = synth.probe(histology=level)
    d = load_probe(_remote_one(alyx, tmp_path / 'one'), p.pid, atlas=painted_atlas, min_histology='traced')
    assert d.provenance.histology == level
    asked = {path for _, path, _ in alyx.requests}
    assert '/insertions' in asked and ('/trajectories' in asked) == (level != 'traced')
    # the painted atlas: VISp5 above the boundary, LP below, for the channels well away from it
    upper, lower, dv = PAINT
    z = p.channels['mlapdv'][:, 2]
    far = np.abs(z - dv) > 60
    regions = BrainRegions()
    want = np.where(z >= dv, regions.acronym2id(upper)[0], regions.acronym2id(lower)[0])
    np.testing.assert_array_equal(np.asarray(d.channels['atlas_id'])[far], want[far])
    assert set(np.asarray(d.channels['acronym'])[far]) == {upper, lower} and far.sum() > 300
    # the same channels as from the records in ONE's REST cache (the offline path)
    offline = load_probe(one_alyx, p.pid, atlas=painted_atlas)
    np.testing.assert_array_equal(d.channels['atlas_id'], offline.channels['atlas_id'])
    for k in 'xyz':
        np.testing.assert_allclose(d.channels[k], offline.channels[k])


def test_missing_trajectory_record_is_invalid_data(alyx, synth, painted_atlas, tmp_path):
    p = synth.probe(histology='aligned')
    alyx.trajectories = []  # the insertion says aligned, Alyx has no alignment
    with pytest.raises(InvalidDataError, match=f'^insertion {p.pid}: Alyx histology records .*trajectories.* '
                                               'missing or incomplete: a list came back empty$'):
        load_probe(_remote_one(alyx, tmp_path / 'one'), p.pid, atlas=painted_atlas)


def test_offline_alyx_unreachable_is_a_histology_warning(alyx, synth, tmp_path):
    from one.api import ONE

    p = synth.probe(histology='traced')
    cache = tmp_path / 'cache'
    shutil.copytree(synth.cache_dir, cache, ignore=shutil.ignore_patterns('.rest'))  # no Alyx records offline
    one = ONE(base_url=alyx.url, username=alyx.username, password=alyx.password, cache_dir=cache, mode='local',
              silent=True)
    alyx.stop()  # then Alyx goes away
    with pytest.warns(HistologyWarning, match=f'^insertion {p.pid}: Alyx histology records unavailable offline'):
        d = load_probe(one, p.pid)
    assert d.provenance.histology == 'none'


def test_offline_without_records_or_login_is_a_histology_error(synth, tmp_path):
    from one.api import ONE

    from alfnwb.errors import HistologyError

    p = synth.probe(histology='traced')
    cache = tmp_path / 'cache'
    shutil.copytree(synth.cache_dir, cache, ignore=shutil.ignore_patterns('.rest'))
    one = ONE(base_url='http://127.0.0.1:9', cache_dir=cache, mode='local', silent=True)  # never logged in
    with pytest.raises(HistologyError, match=f'^insertion {p.pid}: the Alyx histology records of probe01 are not '
                                             "in ONE's REST cache and ONE has no Alyx login"):
        load_probe(one, p.pid)


def _local_copy(synth, tmp_path):
    from one.api import One

    cache = tmp_path / 'cache'
    shutil.copytree(synth.cache_dir, cache)
    return One(cache_dir=cache, mode='local'), cache / synth.sessions[0].path.relative_to(synth.cache_dir)


def test_integrity_check_reads_the_default_revisions_files(synth, tmp_path):
    one, session = _local_copy(synth, tmp_path)
    p = synth.sessions[0].probes[0]  # iblsorter: the default revision is #2024-05-06#, beside unrevisioned files
    bad = session / 'alf/probe00/iblsorter/#2024-05-06#/spikes.amps.npy'
    np.save(bad, np.array([{'payload': 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidDataError, match=f'^insertion {p.pid}: alf/probe00/iblsorter/#2024-05-06#/'
                                               'spikes.amps.npy: holds Python objects'):
        load_probe(one, p.pid)


def test_files_missing_on_disk_are_an_error_before_loading(synth, tmp_path):
    one, session = _local_copy(synth, tmp_path)
    p = synth.sessions[0].probes[1]
    shutil.rmtree(session / 'alf/probe01/pykilosort')  # datasets.pqt still lists them
    with pytest.raises(NotFoundError, match=f'^insertion {p.pid}: cannot locate alf/probe01/pykilosort: ONE finds '
                                            'no file of it$'):
        load_probe(one, p.pid)


def test_integrity_check_runs_or_the_export_fails(synth, one_plain, monkeypatch):
    p = synth.sessions[0].probes[1]

    def no_path(eid, query_type=None):
        raise KeyError(eid)

    monkeypatch.setattr(one_plain, 'eid2path', no_path)
    with pytest.raises(NotFoundError, match=f'^insertion {p.pid}: cannot locate alf/probe01/pykilosort: no path '
                                            f'for session {p.eid}'):
        load_probe(one_plain, p.pid)


def test_base_url_needs_its_scheme(tmp_path, capsys):
    out = tmp_path / 'p.nwb'
    assert main(['--quiet', 'export', '--pid', '00000000-0000-4000-8000-000000000000', '--base-url', '127.0.0.1:9',
                 '-o', str(out)]) == 1
    assert _error_line(capsys) == ("alfnwb: error: base URL '127.0.0.1:9': give the database address with "
                                   "http:// or https://")


def test_http_timeout_setting(monkeypatch):
    from alfnwb.loading import DEFAULT_HTTP_TIMEOUT, http_timeout

    assert http_timeout() == DEFAULT_HTTP_TIMEOUT
    monkeypatch.setenv('ALFNWB_HTTP_TIMEOUT', '2.5')
    assert http_timeout() == 2.5
    monkeypatch.setenv('ALFNWB_HTTP_TIMEOUT', 'soon')
    with pytest.raises(AlfNwbError, match="ALFNWB_HTTP_TIMEOUT='soon'"):
        http_timeout()
