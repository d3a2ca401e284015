"""Batch export of many insertions or sessions into a DANDI-organized folder: validated,
resumable, in parallel (local processes or a Dask cluster).

The main process plans the jobs (with ONE), keeps the manifest and the progress bar; each job
runs :func:`run_job` (in this process, a local process pool, or a Dask worker), which opens its
own ONE on the cache, exports one file and validates it. One batch at a time per dandiset: the
main process holds ``DIR/.alfnwb/batch.lock`` for the whole run (a second batch is refused with
the holder's pid), and writes the manifest under it. Partial files live in this run's own folder
``DIR/.alfnwb/tmp/run-<pid>-<token>`` (same file system, renamed into place when complete; dot
folders are not uploaded by ``dandi upload``); the next run removes the folders of runs that have
ended, so a run killed at any moment leaves no partial file in the dandiset.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .allocator import job_allocator
from .dandi import ensure_dandiset_yaml, inside, nwb_relpath
from .errors import AlfNwbError, AlfNwbWarning, NotFoundError, PerformanceWarning
from .fileio import write_parquet_atomic
from .locks import exclusive_lock
from .nwb.chunks import default_jobs
from .nwb.io import clean_leftovers, no_tqdm_monitor, write_isolation

__all__ = ['Job', 'BatchReport', 'read_id_list', 'plan_jobs', 'run_job', 'run_batch', 'DASK_WORKER_CONFIG',
           'dask_profiling_workers', 'MANIFEST_COLUMNS']

STATE_DIR = '.alfnwb'
MANIFEST = 'manifest.parquet'
REPORT = 'report.json'
BATCH_LOCK = 'batch.lock'
TMP_DIR = 'tmp'

#: Columns of the manifest (one row per job, keyed by ``key``: the pid, or the eid of a session job).
MANIFEST_COLUMNS = ['key', 'kind', 'eid', 'pid', 'probe', 'subject', 'status', 'path', 'size', 'duration_s',
                    'spike_sorter', 'revision', 'histology', 'n_units', 'inspector_critical', 'dandi_errors',
                    'dandi_warnings', 'validation', 'warnings', 'error', 'attempts', 'finished']


@dataclass
class Job:
    """One output file: an insertion (``kind='pid'``) or a whole session (``kind='eid'``)."""

    key: str
    kind: str
    eid: str = ''
    pid: str = ''
    probe: str = ''
    subject: str = ''
    relpath: str = ''
    error: str = ''  # set when planning already failed (e.g. unknown pid)


@dataclass
class BatchReport:
    """What a batch run did."""

    dandiset_dir: Path
    manifest: pd.DataFrame
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: dict = field(default_factory=dict)  # key -> error
    warnings: dict = field(default_factory=dict)  # key -> degradations of that file (also in the manifest)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        n_warnings = sum(len(w) for w in self.warnings.values())
        lines = [f'{self.done} exported, {self.skipped} already done (skipped), {self.failed} failed, '
                 f'{n_warnings} warning(s) in {len(self.warnings)} file(s) in {self.duration_s:.0f} s '
                 f'-> {self.dandiset_dir}']
        for key, err in self.failures.items():
            lines.append(f'  FAILED {key}: {err}')
        for key, messages in self.warnings.items():
            lines += [f'  WARNING {key}: {m}' for m in messages]
        return '\n'.join(lines)


def read_id_list(path: str | Path, kind: str) -> list[str]:
    """Ids from a text file (one per line, ``#`` comments), a CSV or a parquet file.

    In tables, the column named ``kind`` (``pid`` or ``eid``) is used, else ``id``, else the first.
    """
    path = Path(path)
    if not path.exists():
        raise AlfNwbError(f'--{kind}s {path}: no such file')
    if path.suffix in ('.pqt', '.parquet', '.csv'):
        df = pd.read_parquet(path) if path.suffix != '.csv' else pd.read_csv(path, dtype=str)
        df = df.reset_index()
        col = kind if kind in df else ('id' if 'id' in df else ([c for c in df.columns if c != 'index'] or [None])[0])
        if col is None:
            raise AlfNwbError(f'--{kind}s {path}: no {kind} column')
        values = df[col].astype(str).tolist()
    else:
        values = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
    return list(dict.fromkeys(v for v in values if v and v != 'nan'))


def plan_jobs(one, pids: Iterable[str] | None = None, eids: Iterable[str] | None = None, all_insertions: bool = False,
              per: str | None = None) -> list[Job]:
    """The jobs of a batch: one per insertion or per session, with their DANDI paths.

    Parameters
    ----------
    one : one.api.One
    pids, eids : iterable of str, optional
        What to export (give one of them, or ``all_insertions``).
    all_insertions : bool
        Every insertion of the ONE cache (``insertions.pqt``).
    per : {'insertion', 'session'}, optional
        One file per insertion (``_probe-<name>`` in the file name) or per session (all its probes).
        Default: per insertion for pids and ``all_insertions``, per session for eids.

    Returns
    -------
    list of Job
        Ids that cannot be resolved become jobs with ``error`` set: they are reported, not fatal.
    """
    if sum(x is not None and x is not False for x in (pids, eids, all_insertions or None)) != 1:
        raise AlfNwbError('give exactly one of pids, eids or all insertions')
    if all_insertions:
        pids = _all_pids(one)
    per = per or ('session' if eids is not None else 'insertion')
    if per not in ('insertion', 'session'):
        raise AlfNwbError(f'per must be insertion or session, not {per!r}')
    subject = _subject_lookup(one)
    targets, failed = _resolve_targets(one, pids or [], eids or [], per, subject)
    return failed + _target_jobs(targets, per, subject)


def _all_pids(one) -> list[str]:
    """Every insertion id of the ONE cache's insertions table (:class:`NotFoundError` if it has none)."""
    from .loading import insertions_table

    table = insertions_table(one)
    if table is None or len(table) == 0:
        raise NotFoundError('the ONE cache has no insertions table (insertions.pqt)')
    return table['id'].astype(str).tolist()


def _subject_lookup(one) -> Callable[[str], str]:
    """A function eid -> subject nickname that asks ONE once per session."""
    from .loading import session_metadata

    subjects: dict[str, str] = {}

    def subject(eid: str) -> str:
        if eid not in subjects:
            subjects[eid] = session_metadata(one, eid).subject
        return subjects[eid]

    return subject


def _resolve_targets(one, pids: Iterable[str], eids: Iterable[str], per: str,
                     subject: Callable[[str], str]) -> tuple[list[tuple[str, str, str]], list[Job]]:
    """The (eid, pid, probe) of every insertion asked for, and the failed jobs of ids that do not resolve.

    With ``per='session'``, a session is one target ``(eid, '', '')``.
    """
    from .loading import resolve_pid, session_probes

    targets: list[tuple[str, str, str]] = []
    failed: list[Job] = []
    for pid in pids:
        try:
            eid, probe = resolve_pid(one, pid)
            targets.append((eid, pid, probe))
        except AlfNwbError as e:
            failed.append(Job(key=pid, kind='pid', pid=pid, error=str(e)))
    for eid in eids:
        try:
            subject(eid)
            targets += [(eid, pid, probe) for pid, probe in session_probes(one, eid)] if per == 'insertion' \
                else [(eid, '', '')]
        except AlfNwbError as e:
            failed.append(Job(key=eid, kind='eid', eid=eid, error=str(e)))
    return targets, failed


def _target_jobs(targets: list[tuple[str, str, str]], per: str, subject: Callable[[str], str]) -> list[Job]:
    """One job per distinct insertion (``per='insertion'``) or session, with its DANDI path."""
    jobs: list[Job] = []
    seen = set()
    for eid, pid, probe in targets:
        key = pid if per == 'insertion' else eid
        if key in seen:
            continue
        seen.add(key)
        try:
            sub = subject(eid)
            rel = nwb_relpath(sub, eid, probe if per == 'insertion' else None).as_posix()
            jobs.append(Job(key=key, kind='pid' if per == 'insertion' else 'eid', eid=eid,
                            pid=pid if per == 'insertion' else '', probe=probe if per == 'insertion' else '',
                            subject=sub, relpath=rel))
        except AlfNwbError as e:
            jobs.append(Job(key=key, kind='pid' if per == 'insertion' else 'eid', eid=eid, pid=pid, error=str(e)))
    return jobs


_ONE_CACHE: dict = {}


def _worker_one(one_args: dict):
    """One ONE per worker process and cache (ONE reads its tables once)."""
    key = json.dumps(one_args, sort_keys=True)
    if key not in _ONE_CACHE:
        from one.api import ONE, One

        if one_args.get('base_url'):
            _ONE_CACHE[key] = ONE(**one_args, silent=True)
        else:
            _ONE_CACHE[key] = One(cache_dir=one_args['cache_dir'], mode='local')
    return _ONE_CACHE[key]


def run_job(job: dict, dandiset_dir: str, one_args: dict, export_kwargs: dict, validate: bool = True,
            tmp_dir: str | None = None, isolate: bool | None = None) -> dict:
    """Export and validate one job (runs in a worker: arguments and result are plain data).

    ``tmp_dir`` is the run's folder of partial files (default ``DIR/.alfnwb/tmp``); ``isolate`` is
    passed to :func:`alfnwb.nwb.io.write_nwbfile` (False in a pool's or Dask's worker processes).

    Returns
    -------
    dict
        A manifest row.
    """
    t0 = time.perf_counter()
    # in a Dask worker (malloc pinned by Dask's nanny) nearly every array would be fresh pages
    with job_allocator():
        row = _run_job(job, dandiset_dir, one_args, export_kwargs, validate, tmp_dir, isolate)
    row['duration_s'] = round(time.perf_counter() - t0, 3)
    return row


def _run_job(job: dict, dandiset_dir: str, one_args: dict, export_kwargs: dict, validate: bool,
             tmp_dir: str | None, isolate: bool | None) -> dict:
    import warnings

    from .export import export

    row = {k: job.get(k, '') for k in ('key', 'kind', 'eid', 'pid', 'probe', 'subject')}
    row.update(status='failed', path=job.get('relpath', ''), size=0, error='', validation='')
    try:
        root = Path(dandiset_dir)
        out = inside(root, Path(job['relpath']))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tmp_dir) if tmp_dir else root / STATE_DIR / TMP_DIR
        tmp.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), write_isolation(isolate):
            # alfnwb's own warnings go into the file and this row; the parent shows each once
            warnings.filterwarnings('ignore', category=AlfNwbWarning)
            one = _worker_one(one_args)
            kw = dict(export_kwargs)
            if job['kind'] == 'pid':
                result = export(one, out, pid=job['pid'], overwrite=True, tmp_dir=tmp, **kw)
            else:
                result = export(one, out, eid=job['eid'], overwrite=True, tmp_dir=tmp, **kw)
        provs = result.probes
        row.update(size=out.stat().st_size, n_units=result.n_units,
                   spike_sorter=','.join(p.spike_sorter for p in provs),
                   revision=','.join(p.revision or 'unrevisioned' for p in provs),
                   histology=','.join(p.histology for p in provs),
                   warnings='\n'.join(p.warnings for p in provs if p.warnings))
        row['status'] = 'done'
        if validate:
            row.update(_validate(out))
            if row['inspector_critical'] or row['dandi_errors']:
                row['status'] = 'failed'
                row['error'] = f'validation failed: {row["validation"].splitlines()[0]}'
    except AlfNwbError as e:
        row['error'] = str(e)
    except AlfNwbWarning as e:  # a degradation refused by strict=True (--strict)
        row['error'] = f'{e} (strict)'
    except Exception as e:  # noqa: BLE001 - one bad insertion never stops the batch
        row['error'] = f'internal error: {type(e).__name__}: {e}'
        row['traceback'] = traceback.format_exc(limit=8)
    return row


def _validate(path: Path) -> dict:
    """nwbinspector (CRITICAL count) and dandi validate (errors, warnings) of a written file."""
    from nwbinspector import Importance, inspect_nwbfile

    from .dandi import validate_nwb

    messages = []
    critical = 0
    for m in inspect_nwbfile(nwbfile_path=str(path)):
        if m.importance == Importance.CRITICAL:
            critical += 1
            messages.append(f'CRITICAL nwbinspector {m.check_function_name}: {m.message}')
    d = validate_nwb(path)
    messages = messages + d['messages']
    return {'inspector_critical': critical, 'dandi_errors': d['errors'], 'dandi_warnings': d['warnings'],
            'validation': '\n'.join(messages)}


def _load_manifest(path: Path) -> pd.DataFrame:
    if path.exists():
        df = pd.read_parquet(path)
        return df.reindex(columns=MANIFEST_COLUMNS)
    return pd.DataFrame(columns=MANIFEST_COLUMNS)


def _save_manifest(df: pd.DataFrame, path: Path) -> None:
    """Atomic: a killed run leaves the previous manifest or the new one, never half of one."""
    df = df.reindex(columns=MANIFEST_COLUMNS).reset_index(drop=True)
    for c in ('size', 'n_units', 'inspector_critical', 'dandi_errors', 'dandi_warnings', 'attempts'):
        df[c] = pd.to_numeric(df[c], errors='coerce').fillna(0).astype(np.int64)
    df['duration_s'] = pd.to_numeric(df['duration_s'], errors='coerce').astype(float)
    for c in set(MANIFEST_COLUMNS) - {'size', 'n_units', 'inspector_critical', 'dandi_errors', 'dandi_warnings',
                                       'attempts', 'duration_s'}:
        df[c] = df[c].fillna('').astype(str)
    write_parquet_atomic(df, path)


def _clean_partials(root: Path) -> None:
    """Remove what ended runs left: every run folder of partial files, partial manifests, and, in
    the subject folders, partial and lock files of outputs nobody is writing now.

    Called with the dandiset's batch lock held: no other batch is running, so every run folder is
    an ended run's. An export from the command line may be writing into a subject folder: its
    output is locked, and :func:`alfnwb.nwb.io.clean_leftovers` leaves it alone.
    """
    tmp = root / STATE_DIR / TMP_DIR
    if tmp.exists():
        shutil.rmtree(tmp)
    for folder in root.glob('sub-*/'):
        clean_leftovers(folder)
    for p in (root / STATE_DIR).glob('*.partial'):
        p.unlink()


@contextlib.contextmanager
def batch_lock(dandiset_dir: str | Path) -> Iterator[Path]:
    """Hold the dandiset's batch lock; remove what ended runs left; yield this run's folder of partial files.

    Raises
    ------
    alfnwb.errors.OutputError
        Another batch is running on this dandiset (its pid is in the message), or its file system
        has no locks.
    """
    root = Path(dandiset_dir)
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    busy = 'another alfnwb batch (pid {pid}) is running on it; wait for it to finish'
    with exclusive_lock(state / BATCH_LOCK, f'dandiset {root}', busy):
        _clean_partials(root)
        # the owner's pid in the name says whose files these are
        run_tmp = state / TMP_DIR / f'run-{os.getpid()}-{secrets.token_hex(4)}'
        run_tmp.mkdir(parents=True)
        try:
            yield run_tmp
        finally:  # normally empty: each failed write removes its own partial file
            shutil.rmtree(run_tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                run_tmp.parent.rmdir()


def _is_done(prev: pd.Series | None, root: Path) -> bool:
    """Done earlier and still there, with the size the manifest recorded."""
    if prev is None or prev['status'] not in ('done', 'skipped'):
        return False
    path = root / str(prev['path'])
    return path.is_file() and path.stat().st_size == int(prev['size'])


def run_batch(jobs: list[Job], dandiset_dir: str | Path, one_args: dict, *, workers: int = 1,
              scheduler: str | None = None, client=None, validate: bool = True, retries: int = 0,
              export_kwargs: dict | None = None, progress: bool = True) -> BatchReport:
    """Run the jobs into a DANDI-organized folder; resume what an earlier run left.

    Parameters
    ----------
    jobs : list of Job
        From :func:`plan_jobs`.
    dandiset_dir : str or pathlib.Path
        The dandiset folder (created, with a ``dandiset.yaml``, if missing).
    one_args : dict
        How each worker opens ONE: ``{'cache_dir': ...}`` (local), plus ``base_url`` and ``mode``
        for a OneAlyx.
    workers : int
        Local processes (1: in this process).
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:port``): jobs run as tasks on its workers.
    client : distributed.Client, optional
        An existing Dask client instead of ``scheduler``.
    validate : bool
        Check each written file with nwbinspector and dandi validate.
    retries : int
        Extra attempts for jobs that failed with an unexpected (non-data) error.
    export_kwargs : dict, optional
        Passed to :func:`alfnwb.export.export` (spike_sorter, revision, extensions, ...).
    progress : bool
        A progress bar with the estimated time left (stderr).

    Returns
    -------
    BatchReport
    """
    t0 = time.perf_counter()
    root = Path(dandiset_dir)
    with batch_lock(root) as run_tmp:  # one batch per dandiset: the manifest is written under its lock
        manifest_path = _prepare_dandiset(root)
        rows = {str(r['key']): r for _, r in _load_manifest(manifest_path).iterrows()}
        todo = _jobs_to_run(jobs, rows, root)
        _save_manifest(pd.DataFrame(list(rows.values())), manifest_path)

        export_kwargs = dict(export_kwargs or {})
        if client is None and not scheduler:  # local workers share the cores: compression threads split them
            export_kwargs.setdefault('n_jobs', max(1, default_jobs() // max(workers, 1)))
        executor, own_executor = _open_executor(client, scheduler, workers)
        attempts = {j.key: int(rows[j.key]['attempts']) if j.key in rows else 0 for j in todo}
        bar = _progress_bar(len(todo), progress)
        try:
            _run_rounds(todo, attempts, rows, manifest_path, executor, root, one_args, export_kwargs, validate,
                        retries, bar, run_tmp)
        finally:
            bar.close()
            if own_executor is not None:
                _close_executor(own_executor)
        return _finish_report(root, rows, jobs, t0)


def _prepare_dandiset(root: Path) -> Path:
    """Create ``dandiset.yaml`` if missing, and return the manifest's path."""
    ensure_dandiset_yaml(root)
    return root / STATE_DIR / MANIFEST


def _jobs_to_run(jobs: list[Job], rows: dict[str, pd.Series], root: Path) -> list[Job]:
    """The jobs still to run; updates ``rows`` (manifest rows by key) for the others.

    A job that failed at planning is recorded as failed (one more attempt); a job done earlier, whose
    file is still there with the recorded size and path, is recorded as skipped.
    """
    todo = []
    for job in jobs:
        prev = rows.get(job.key)
        if job.error:
            rows[job.key] = pd.Series({**asdict(job), 'status': 'failed', 'path': '', 'error': job.error,
                                       'attempts': int(prev['attempts']) + 1 if prev is not None else 1,
                                       'finished': _now()})
            continue
        if _is_done(prev, root) and str(prev['path']) == job.relpath:
            rows[job.key] = prev.copy()
            rows[job.key]['status'] = 'skipped'
            continue
        todo.append(job)
    return todo


def _open_executor(client, scheduler: str | None, workers: int) -> tuple[Executor | None, object | None]:
    """Where the jobs run, and what this run opened itself (to close at the end).

    Returns
    -------
    executor : concurrent.futures.Executor or None
        The Dask client's executor, a local process pool (``workers > 1``), or None (this process).
    own : distributed.Client or ProcessPoolExecutor or None
        The client or pool created here, None if the caller's ``client`` is used or nothing was created.
    """
    own_executor = None
    if client is None and scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise AlfNwbError('--scheduler needs dask.distributed (pip install distributed)') from None
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as e:
            raise AlfNwbError(f'cannot reach the Dask scheduler {scheduler}: {e}') from None
        own_executor = client
    if client is not None:
        _warn_profiling_workers(client)
        executor: Executor | None = client.get_executor()
    elif workers > 1:
        import multiprocessing

        executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn'),
                                       initializer=_warm_worker)
        own_executor = executor
    else:
        executor = None
    return executor, own_executor


#: Dask configuration for workers that run exports (docs/publish.md, *Dask's worker settings*): set it
#: where the workers start (``dask.config.set`` around a ``LocalCluster``, or the environment variables
#: ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``, ``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=1s`` and
#: ``DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL=5s`` of ``dask worker``). The statistical profiler
#: (every 10 ms by Dask's default) stops the task's thread to walk its stack; the event loop's health tick
#: (every 20 ms) and system monitor (every 500 ms) wake a thread that takes the GIL from the export. The
#: memory monitor, which enforces the worker's memory limit, keeps Dask's interval.
DASK_WORKER_CONFIG = {
    'distributed.worker.profile.enabled': False,
    'distributed.admin.tick.interval': '1s',
    'distributed.admin.system-monitor.interval': '5s',
}


def dask_profiling_workers(client) -> dict[str, float]:
    """The Dask workers of ``client`` that run Dask's statistical profiler, and its interval (s).

    A worker with the profiler on (Dask's default) stops its task thread every 10 ms to walk its
    stack; an export there took 5-7 % longer in this project's benchmark (docs/publish.md). Read
    from each worker's configuration (``distributed.worker.profile``), with ``Client.run``.

    Returns
    -------
    dict
        Worker address -> seconds between two samples of its profiler; empty if none profiles.
    """
    found = client.run(_profiler_interval)
    return {address: interval for address, interval in sorted(found.items()) if interval is not None}


def _profiler_interval() -> float | None:
    """In a Dask worker: seconds between two samples of Dask's profiler, None if it is off."""
    import dask.config
    from dask.utils import parse_timedelta

    if not dask.config.get('distributed.worker.profile.enabled', default=True):
        return None
    return parse_timedelta(dask.config.get('distributed.worker.profile.interval', default='10ms'), default='ms')


def _warn_profiling_workers(client) -> None:
    """A :class:`~alfnwb.errors.PerformanceWarning` naming the workers that profile, and how to stop it."""
    import warnings

    found = dask_profiling_workers(client)
    if found:
        every = sorted({f'{1e3 * s:g} ms' for s in found.values()})
        warnings.warn(PerformanceWarning(
            f'{len(found)} Dask worker(s) ({", ".join(found)}) run Dask\'s profiler every {" or ".join(every)}, '
            'which slows each export (5-7 % measured): start them with '
            'DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (docs/publish.md)'), stacklevel=3)


def _warm_worker() -> None:
    """A local worker imports what every job needs once, as it starts, while the others start too."""
    from .export import preload

    preload()


def _close_executor(own_executor) -> None:
    """Shut down a process pool (cancelling what has not started) or close a Dask client."""
    if isinstance(own_executor, ProcessPoolExecutor):
        own_executor.shutdown(wait=True, cancel_futures=True)
    else:
        own_executor.close()


def _run_rounds(todo: list[Job], attempts: dict[str, int], rows: dict[str, pd.Series], manifest_path: Path,
                executor: Executor | None, root: Path, one_args: dict, export_kwargs: dict, validate: bool,
                retries: int, bar, tmp_dir: Path) -> None:
    """Run the jobs, then again (up to ``retries`` times) those that failed with an internal error.

    ``attempts`` (attempts so far, by key) is counted up; each result goes into ``rows`` and the
    manifest is saved after each one. ``tmp_dir`` is this run's folder of partial files.
    """
    pending = list(todo)
    round_ = 0
    while pending:
        results = _run_round(pending, executor, root, one_args, export_kwargs, validate, bar, tmp_dir)
        retry = []
        for job, row in results:
            attempts[job.key] += 1
            row['attempts'] = attempts[job.key]
            row['finished'] = _now()
            rows[job.key] = pd.Series(row)
            _save_manifest(pd.DataFrame(list(rows.values())), manifest_path)
            _show_warnings(row.get('warnings', ''))
            if row['status'] == 'failed' and _is_internal(row['error']) and round_ < retries:
                retry.append(job)
        pending, round_ = retry, round_ + 1
        if pending:
            bar.total += len(pending)
            bar.refresh()


def _finish_report(root: Path, rows: dict[str, pd.Series], jobs: list[Job], t0: float) -> BatchReport:
    """The report of this run's jobs (the manifest holds every run's), also written to ``report.json``."""
    final = pd.DataFrame(list(rows.values())).reindex(columns=MANIFEST_COLUMNS)
    keys = [j.key for j in jobs]
    this_run = final[final['key'].isin(keys)]
    report = BatchReport(dandiset_dir=root, manifest=final)
    report.done = int((this_run['status'] == 'done').sum())
    report.skipped = int((this_run['status'] == 'skipped').sum())
    failed = this_run[this_run['status'] == 'failed']
    report.failed = len(failed)
    report.failures = dict(zip(failed['key'], failed['error']))
    warned = this_run['warnings'].fillna('').astype(str)
    report.warnings = {k: w.splitlines() for k, w in zip(this_run['key'], warned) if w}
    report.duration_s = time.perf_counter() - t0
    (root / STATE_DIR / REPORT).write_text(json.dumps({
        'dandiset_dir': str(root), 'done': report.done, 'skipped': report.skipped, 'failed': report.failed,
        'failures': report.failures, 'warnings': report.warnings, 'duration_s': round(report.duration_s, 1),
        'finished': _now(),
    }, indent=1))
    return report


def _is_internal(error: str) -> bool:
    """An internal error (worth a retry): one run_job caught, or an :class:`~alfnwb.errors.InternalError`."""
    return error.startswith('internal error') or ': internal error: ' in error


def _run_round(jobs, executor, root, one_args, export_kwargs, validate, bar, tmp_dir):
    # a pool's or Dask's worker writes in process: the pool already keeps each job out of the user's
    # process, and a Dask worker's threads make forking unsafe
    args = (str(root), one_args, export_kwargs, validate, str(tmp_dir), False if executor is not None else None)
    if executor is None:
        for job in jobs:
            row = run_job(asdict(job), *args)
            bar.update(1)
            yield job, row
        return
    futures = {executor.submit(run_job, asdict(job), *args): job for job in jobs}
    for fut in as_completed(futures):
        job = futures[fut]
        try:
            row = fut.result()
        except Exception as e:  # noqa: BLE001 - a worker that died (killed, out of memory)
            row = {**{k: getattr(job, k) for k in ('key', 'kind', 'eid', 'pid', 'probe', 'subject')},
                   'status': 'failed', 'path': job.relpath, 'error': f'internal error: worker failed: '
                   f'{type(e).__name__}: {e}'}
        bar.update(1)
        yield job, row


def _show_warnings(text: str) -> None:
    """A job's degradations (recorded in its file and manifest row), raised again here for the user."""
    import warnings

    for line in filter(None, str(text or '').splitlines()):
        warnings.warn(AlfNwbWarning(line), stacklevel=2)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    # even disabled, this bar would start tqdm's monitor thread: the jobs run in this process
    # (1 worker) would then write their files in it, not in the forked writer
    no_tqdm_monitor()
    return tqdm(total=total, unit='file', desc='alfnwb batch', disable=not enabled or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S')
