"""Writing NWB files: to a temporary file, validated, then renamed; one writer per output at a time.

A failed or interrupted export leaves nothing at the output path (the previous file, if any, stays
until the new one is complete and valid). How the HDF5 write is isolated, and why, is in
:func:`write_nwbfile` and ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import gc
import glob
import json
import logging
import os
import re
import select
import signal
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from ..allocator import return_free_memory
from ..errors import AlfNwbError, InternalError, OutputError
from ..locks import exclusive_lock
from .chunks import fill_parallel_gzip, set_progress_hook

log = logging.getLogger(__name__)

#: Seconds a child writer may go without progress (no report, no growth of its file) before it is
#: considered stalled and killed. Generous: a compressed chunk of a large file takes seconds, not minutes.
STALL_TIMEOUT = 600.0

PARTIAL_SUFFIX = '.partial.nwb'

# the names tempfile.mkstemp gives: '.<stem>.' + 8 characters + '.partial.nwb'
_PARTIAL_NAME = re.compile(r'^\.(?P<stem>.+)\.[A-Za-z0-9_]{8}\.partial\.nwb$')


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before loading anything, if the output cannot be written."""
    path = Path(path)
    if path.suffix != '.nwb':
        raise OutputError(f'output {path}: the file name must end in .nwb')
    if path.exists() and not overwrite:
        raise OutputError(f'output {path}: exists (use --overwrite / overwrite=True to replace it)')
    folder = path.parent if str(path.parent) else Path('.')
    if not folder.is_dir():
        raise OutputError(f'output {path}: folder {folder} does not exist')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f'output {path}: folder {folder} is not writable')
    return path


def validate(path: str | Path) -> list[str]:
    """pynwb schema validation against the namespaces already loaded; returns the messages (empty when valid).

    ``pynwb.validate(use_cached_namespaces=True)`` parses the schema cached in the file again
    (seconds, in every export). The file was just written with this process's namespaces, so it is
    validated against those, with hdmf's ``ValidatorMap`` on the file's builder, as pynwb does. pynwb
    walks the whole file once per namespace that no other includes (here ndx-spikesorting and
    ndx-anatomical-localization, each with all of core); the walk here is one, over the union of
    their types (:func:`_union_namespace`), and gives the same messages without pynwb's repeats. A
    namespace cached in the file but not loaded here falls back to pynwb's own validation from the
    cached schema.
    """
    import h5py
    from hdmf.validate import ValidatorMap
    from pynwb import NWBHDF5IO, get_manager

    with h5py.File(path, 'r') as f:
        cached = list(f['specifications'].keys()) if 'specifications' in f else []
    manager = get_manager()
    catalog = manager.namespace_catalog
    if not cached or any(name not in catalog.namespaces for name in cached):
        from pynwb import validate as pynwb_validate

        result = pynwb_validate(path=str(path), use_cached_namespaces=True)
        return [str(e) for e in (result[0] if isinstance(result, tuple) else result)]
    included = {s['namespace'] for name in cached for s in catalog.get_namespace(name)['schema'] if s.get('namespace')}
    included.add('hdmf-experimental')  # as pynwb does (pynwb issue 1357: it cannot be validated on its own)
    with NWBHDF5IO(str(path), 'r', manager=manager, load_namespaces=False) as io:
        builder = io.read_builder()
        namespace = _union_namespace(catalog, [name for name in cached if name not in included])
        return [str(e) for e in ValidatorMap(namespace).validate(builder)]


def _union_namespace(catalog, names: list[str]):
    """One namespace with the types of all ``names`` (each already holds the types it includes).

    The types two namespaces share (core's, through their includes) are the same specs, so the
    union has one spec per type. Uses hdmf's public ``SpecCatalog``/``SpecNamespace`` (hdmf 6); the name and version are
    only labels (ValidatorMap reads the types).
    """
    if len(names) == 1:
        return catalog.get_namespace(names[0])
    from hdmf.spec import SpecCatalog, SpecNamespace

    union = SpecCatalog()
    for name in names:
        namespace = catalog.get_namespace(name)
        for data_type in namespace.get_registered_types():
            union.register_spec(namespace.get_spec(data_type), namespace.catalog.get_spec_source_file(data_type))
    return SpecNamespace(doc='the namespaces of the file', name='+'.join(names), version='0',
                         schema=[{'namespace': name} for name in names], catalog=union)


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: ``.<name>.nwb.lock`` in the output's folder."""
    path = Path(path)
    return path.parent / f'.{path.name}.lock'


def partial_output(partial: str | Path) -> Path | None:
    """The output a partial file beside it was written for (``.<stem>.XXXXXXXX.partial.nwb`` ->
    ``<stem>.nwb``), or None if the name is not one :func:`write_nwbfile` gives."""
    partial = Path(partial)
    match = _PARTIAL_NAME.match(partial.name)
    return partial.parent / f'{match["stem"]}.nwb' if match else None


@contextlib.contextmanager
def output_lock(path: str | Path, tmp_dir: str | Path | None = None) -> Iterator[None]:
    """Hold an exclusive lock on an output path for the whole export (load, build, write).

    A second process exporting to the same path fails at once with a clear message (naming the
    holder's pid) instead of interleaving its file with the first one's. The lock is
    :func:`lock_path`, beside the output whatever ``tmp_dir`` is, so that an export from the command
    line and a batch job writing the same file exclude each other; the operating system releases it
    when the process dies (``kill -9`` included). Partial files a killed writer left beside the
    output are removed once the lock is held.

    Parameters
    ----------
    path : str or pathlib.Path
        The output file.
    tmp_dir : str or pathlib.Path, optional
        The folder of the temporary file. It does not change the lock; partial files there are its
        owner's to clean (a batch cleans its own folder).

    Raises
    ------
    alfnwb.errors.OutputError
        Another process holds the lock, or the file system has no locks.
    """
    path = Path(path)
    busy = 'another alfnwb process (pid {pid}) is writing it; wait for it to finish'
    with exclusive_lock(lock_path(path), f'output {path}', busy):
        for stale in path.parent.glob(f'.{glob.escape(path.stem)}.*{PARTIAL_SUFFIX}'):
            if partial_output(stale) == path:
                stale.unlink(missing_ok=True)
        yield


def clean_leftovers(folder: str | Path) -> None:
    """Remove what killed writers left in ``folder`` for outputs nobody is writing now.

    Each output with a partial file or a lock file there is locked in turn (which removes its
    partial files; releasing it removes the lock file); outputs whose lock is held by a running
    export are left alone.
    """
    folder = Path(folder)
    outputs = {partial_output(p) for p in folder.glob(f'.*{PARTIAL_SUFFIX}')} - {None}
    outputs |= {folder / p.name[1:-len('.lock')] for p in folder.glob('.*.nwb.lock')}
    for output in sorted(outputs):
        with contextlib.suppress(OutputError):  # busy: its writer cleans after itself
            with output_lock(output):
                pass


# -- where the HDF5 write runs ---------------------------------------------------------------------

_ISOLATION: contextvars.ContextVar[bool | None] = contextvars.ContextVar('alfnwb_write_isolation', default=None)


@contextlib.contextmanager
def write_isolation(isolate: bool | None) -> Iterator[None]:
    """The default ``isolate`` of :func:`write_nwbfile` calls inside the block (e.g. through
    :func:`alfnwb.export.export`): a batch's worker processes write in process (``False``)."""
    token = _ISOLATION.set(isolate)
    try:
        yield
    finally:
        _ISOLATION.reset(token)


def no_tqdm_monitor() -> None:
    """Keep tqdm from starting its monitor thread, which would keep :func:`write_nwbfile` from forking.

    tqdm starts the thread with its first bar, a disabled one included (tqdm 4.x: ``tqdm.__new__``),
    and it lives until the process exits: :func:`fork_blocker` then sees another thread and every
    later file is written in process. A monitor already running (started by the caller) is left alone.
    """
    import tqdm

    tqdm.tqdm.monitor_interval = 0


def fork_blocker() -> str | None:
    """Why forking this process now could hang the child, or None when it is safe.

    A forked child has only the thread that forked; a lock another thread held at that moment
    (h5py's, HDF5's, a logging handler's) stays locked in the child for ever. Python threads (numba's
    and tqdm's monitors, a Dask worker's threads, the user's) are the ones that take such locks.
    """
    if not hasattr(os, 'fork'):
        return 'this platform has no fork'
    main = threading.main_thread()
    if threading.current_thread() is not main:
        return 'not called from the main thread'
    others = [t.name for t in threading.enumerate() if t is not main]
    if threading.active_count() != 1 or others:
        return f'{len(others) or threading.active_count() - 1} other thread(s) alive: {", ".join(others[:5])}'
    return None


def _isolation_choice(isolate: bool | None, blocker: str | None) -> tuple[bool, str]:
    """Whether to write in a forked child, and why (for the log); ``blocker`` is :func:`fork_blocker`'s answer."""
    if isolate is None:
        isolate = _ISOLATION.get()
    if isolate is None:
        return blocker is None, blocker or 'no other thread alive'
    if isolate and not hasattr(os, 'fork'):
        return False, 'this platform has no fork'
    return isolate, 'asked for' + (f' ({blocker})' if isolate and blocker else '')


# -- the forked writer -----------------------------------------------------------------------------

class ChildTraceback(Exception):
    """The traceback of the exception raised in the writer child process (chained to the error)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return '\n"""\n' + self.text.rstrip('\n') + '\n"""'


class _ChildFailed(Exception):
    """What the child reported (``kind``: error, stalled or died) before the parent turns it into an error."""

    def __init__(self, report: dict):
        super().__init__(report.get('kind'))
        self.report = report


#: Compression threads of the writer (``write_nwbfile(jobs=...)``; None: the cores available).
_JOBS: contextvars.ContextVar[int | None] = contextvars.ContextVar('alfnwb_write_jobs', default=None)


def _write_hdf5(nwbfile, tmp: Path) -> None:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(tmp), mode='w') as io:
        io.write(nwbfile)
        fill_parallel_gzip(nwbfile, _JOBS.get())  # the large gzip datasets hdmf created empty


def _write_in_process(nwbfile, tmp: Path, progress: Callable[[str], None] | None) -> None:
    """Write here, telling ``progress`` the size written as chunks go out."""
    set_progress_hook(_SizeReporter(tmp, progress) if progress is not None else None)
    try:
        _write_hdf5(nwbfile, tmp)
    finally:
        set_progress_hook(None)


def _send(fd: int, message: dict) -> None:
    """One JSON line up the pipe to the parent."""
    data = (json.dumps(message) + '\n').encode()
    while data:
        data = data[os.write(fd, data):]


def _describe(exc: BaseException) -> dict:
    """The child's failure as plain data: type, first line, the storage reason if any, full traceback."""
    text = str(exc).splitlines()
    return {'kind': 'error', 'type': type(exc).__name__, 'message': text[0][:500] if text else '',
            'reason': storage_failure(exc), 'traceback': ''.join(traceback.format_exception(exc))[-50_000:]}


def _child_main(nwbfile, tmp: Path, write_end: int) -> None:
    """The forked writer: write, report each step over the pipe, and leave without running any exit
    handler (the parent's, inherited by the fork, are not ours to run)."""
    code = 0
    try:
        # Ctrl-C reaches the whole process group: the parent decides, and kills this child
        with contextlib.suppress(ValueError):  # ValueError: not the main thread (then it cannot be set)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        # HDF5's own diagnostics would clutter the terminal: the reason goes up the pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        last = [0.0]

        def hook():
            if time.monotonic() - last[0] > 1.0:  # at most once a second
                last[0] = time.monotonic()
                _send(write_end, {'kind': 'progress'})

        set_progress_hook(hook)
        _send(write_end, {'kind': 'started', 'pid': os.getpid()})
        _write_hdf5(nwbfile, tmp)
        _send(write_end, {'kind': 'done'})
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        code = 1
        with contextlib.suppress(BaseException):
            _send(write_end, _describe(e))
    finally:
        os._exit(code)


def _fork(safe: bool) -> int:
    if not safe:
        return os.fork()
    with warnings.catch_warnings():
        # Python >= 3.12 warns when the process has any native thread; fork_blocker found no Python
        # thread, and the native ones left (BLAS pools) hold no lock the writer needs
        warnings.filterwarnings('ignore', message=r'This process .* is multi-threaded', category=DeprecationWarning)
        return os.fork()


def _fork_frozen(safe: bool) -> int:
    """:func:`_fork` with this process's objects out of the child's garbage collector.

    A collection in the child writes to the header of every object it visits, and each page of the
    parent's objects it reaches is copied into the child: ~60 MB of a default export, on top of the
    parent's memory. The child freezes them (``gc.freeze``) before anything else: it moves the
    collector's lists in constant time, touching no object. The parent's collector is not changed,
    nor what the parent froze (an export freezes the objects older than itself:
    :mod:`alfnwb.collector`; the child freezes the export's too).
    """
    pid = _fork(safe)
    if pid == 0:
        gc.freeze()
    return pid


def _write_isolated(nwbfile, tmp: Path, stall_timeout: float, safe: bool = True,
                    progress: Callable[[str], None] | None = None) -> None:
    """Write the HDF5 file in a forked child process, watched by this one.

    When the disk fills up (or a file size limit is hit), HDF5 keeps the half-written file open and
    its final flush crashes the process that wrote it at exit. The child takes that crash; this
    process reports the failure and removes the file. The fork shares the data copy-on-write: no
    copy of the spikes is made. A child that makes no progress for ``stall_timeout`` seconds, or an
    interrupt (Ctrl-C) here, gets the child killed and reaped before the error goes on.

    Raises
    ------
    _ChildFailed
        The child's report of its failure, a stall, or how it died.
    """
    read_end, write_end = os.pipe()
    return_free_memory()  # the heap's free pages would stay in this process and be copied into the child
    pid = _fork_frozen(safe)
    if pid == 0:
        os.close(read_end)
        _child_main(nwbfile, tmp, write_end)  # never returns
    os.close(write_end)
    log.debug('writing %s in child process %d', tmp, pid)
    try:
        report = _ChildWatch(pid, read_end, tmp, stall_timeout, _SizeReporter(tmp, progress)).wait()
    except BaseException:  # the stall, or Ctrl-C: no writer may outlive this call
        _kill_and_reap(pid)
        raise
    finally:
        os.close(read_end)
    if report.get('kind') != 'done':
        raise _ChildFailed(report)


class _ChildWatch:
    """Reads the child's JSON reports until it exits; a stall is no report and no file growth."""

    poll = 0.2

    def __init__(self, pid: int, read_end: int, tmp: Path, stall_timeout: float, reporter=None):
        self.pid, self.fd, self.tmp, self.timeout = pid, read_end, tmp, stall_timeout
        self.reporter = reporter or _SizeReporter(tmp, None)
        self.buffer, self.final, self.eof = b'', None, False

    def read(self) -> bool:
        """Read what the child wrote; True if anything came."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return False
        *lines, self.buffer = (self.buffer + data).split(b'\n')
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get('kind') in ('done', 'error'):
                    self.final = message
        return True

    def wait(self) -> dict:
        """The child's final report, or what happened to it (``died``); raises :class:`_ChildFailed` on a stall."""
        last, size, status = time.monotonic(), -1, None
        while status is None:
            if self.eof:  # the child is exiting: only its exit status is awaited
                time.sleep(0.01)
                got = False
            else:
                got = bool(select.select([self.fd], [], [], self.poll)[0]) and self.read()
            done, wait_status = os.waitpid(self.pid, os.WNOHANG)
            status = wait_status if done else None
            now_size = _size(self.tmp)
            if got or now_size != size:
                last, size = time.monotonic(), now_size
                self.reporter()
            elif status is None and time.monotonic() - last > self.timeout:
                raise _ChildFailed({'kind': 'stalled', 'seconds': self.timeout, 'pid': self.pid})
        while not self.eof and select.select([self.fd], [], [], 0)[0] and self.read():
            pass  # what the child wrote just before it exited
        return self.final or _death(status)


class _SizeReporter:
    """Tells ``progress`` how much of the file is written, at most every ``every`` seconds."""

    def __init__(self, tmp: Path, progress: Callable[[str], None] | None, every: float = 2.0):
        self.tmp, self.progress, self.every, self.last = tmp, progress, every, time.monotonic()

    def __call__(self) -> None:
        if self.progress is not None and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self.progress(f'writing: {max(_size(self.tmp), 0) / 1e6:.1f} MB so far')


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _death(status: int) -> dict:
    """A child that exited without a final report: how it ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return {'kind': 'died', 'how': f'killed by signal {number} ({signal.Signals(number).name})'}
        return {'kind': 'died', 'how': f'killed by signal {number}'}
    return {'kind': 'died', 'how': f'exited with status {os.WEXITSTATUS(status)} without a report'}


def _kill_and_reap(pid: int, patience: float = 10.0) -> None:
    """SIGKILL the child and reap it (so that it leaves no zombie), waiting at most ``patience`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + patience
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:  # stuck in the kernel (e.g. a hung network file system)
            log.warning('the HDF5 writer (pid %d) does not die; it is left to the operating system', pid)
            return
        time.sleep(0.01)


# -- errors ----------------------------------------------------------------------------------------

_STORAGE = {errno.ENOSPC: 'no space left on device', errno.EFBIG: 'file too large (file size limit)',
            errno.EDQUOT: 'disk quota exceeded', errno.EROFS: 'read-only file system', errno.EIO: 'I/O error',
            errno.EACCES: 'permission denied'}


def storage_failure(exc: BaseException) -> str | None:
    """What went wrong on the storage side (disk full, quota, file size limit, read-only, I/O error,
    permission), or None for every other error: those are bugs, reported as internal errors."""
    code = getattr(exc, 'errno', None)
    if code in _STORAGE:
        return _STORAGE[code]
    # h5py raises RuntimeError for failed writes; HDF5's message holds the system's errno
    match = re.search(r'errno = (\d+)', str(exc))
    if match and int(match.group(1)) in _STORAGE:
        return _STORAGE[int(match.group(1))]
    return None


def _write_error(path: Path, exc: BaseException) -> tuple[BaseException, BaseException | None]:
    """The error to raise for a failed write, and its cause: ours pass as they are; storage failures
    are :class:`OutputError`; anything else is an :class:`InternalError` with the full traceback."""
    if isinstance(exc, AlfNwbError) or not isinstance(exc, Exception):  # ours; Ctrl-C, SystemExit
        return exc, None
    if not isinstance(exc, _ChildFailed):
        reason = storage_failure(exc)
        if reason:
            return OutputError(f'output {path}: write failed: {reason}'), exc
        log.debug('writing %s failed', path, exc_info=exc)
        return InternalError(f'output {path}: internal error: {type(exc).__name__}: {_first_line(exc)}'), exc
    report = exc.report
    if report['kind'] == 'stalled':
        return OutputError(f'output {path}: write failed: the HDF5 writer made no progress for '
                           f'{report["seconds"]:g} s and was stopped'), None
    if report['kind'] == 'died':
        return InternalError(f'output {path}: internal error: the HDF5 writer {report["how"]}'), None
    cause = ChildTraceback(report.get('traceback', ''))
    log.debug('the HDF5 writer of %s failed:\n%s', path, cause.text)
    if report.get('reason'):
        return OutputError(f'output {path}: write failed: {report["reason"]}'), cause
    return InternalError(f'output {path}: internal error: {report["type"]}: {report["message"]}'), cause


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:500] if lines else ''


def _validate_and_rename(tmp: Path, path: Path, overwrite: bool, validate_file: bool,
                         progress: Callable[[str], None] | None = None) -> None:
    if validate_file and progress is not None:
        progress(f'validating {path.name} (pynwb schema)')
    if validate_file:
        errors = validate(tmp)
        if errors:
            raise OutputError(f'output {path}: NWB schema validation failed: {errors[0]}')
    if path.exists() and not overwrite:
        raise OutputError(f'output {path}: appeared while writing (use --overwrite)')
    os.replace(tmp, path)


def _partial_path(path: Path, tmp_dir: str | Path | None) -> Path:
    """A fresh name for the temporary file (``.<stem>.XXXXXXXX.partial.nwb``); the file does not exist."""
    folder = Path(tmp_dir) if tmp_dir else path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=PARTIAL_SUFFIX, dir=folder)
    except OSError as e:
        raise OutputError(f'output {path}: cannot create a temporary file in {folder} ({e.strerror or e})') from None
    os.close(fd)
    os.unlink(tmp)  # h5py creates the file itself
    return Path(tmp)


def write_nwbfile(nwbfile, path: str | Path, overwrite: bool = False, validate_file: bool = True,
                  tmp_dir: str | Path | None = None, *, isolate: bool | None = None,
                  stall_timeout: float | None = None, progress: Callable[[str], None] | None = None,
                  jobs: int | None = None) -> Path:
    """Write atomically: temporary file, schema validation, rename.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
    path : str or pathlib.Path
        Output ``.nwb`` path.
    overwrite : bool
        Replace an existing file.
    validate_file : bool
        Run pynwb's schema validation before the rename.
    tmp_dir : str or pathlib.Path, optional
        Folder of the temporary file (default: the output's folder). It must be on the same file
        system for the rename to be atomic; a batch keeps its partial files out of the dandiset.
    isolate : bool, optional
        Write the HDF5 file in a forked child process, so that a full disk crashes the child, not
        this process. None (default): the value of an enclosing :func:`write_isolation`, else only
        where forking is safe (:func:`fork_blocker`: no other thread alive), else in this process.
        A batch's worker processes pass False: the pool already isolates each job.
    stall_timeout : float, optional
        Seconds without progress before the child writer is killed (default :data:`STALL_TIMEOUT`).
    progress : callable, optional
        Told the megabytes written so far (every few seconds), then that validation starts.
    jobs : int, optional
        Threads compressing the large gzip datasets (:mod:`alfnwb.nwb.chunks`; default: the cores).

    Returns
    -------
    pathlib.Path (the output path)

    Raises
    ------
    alfnwb.errors.OutputError
        The storage failed (``write failed: no space left on device``, ...), the writer stalled, or
        schema validation failed.
    alfnwb.errors.InternalError
        Any other failure (a bug), with its traceback chained (the child's, when it ran in one).
    """
    path = check_output(path, overwrite)
    token = _JOBS.set(jobs)
    try:
        _write_validated(nwbfile, path, overwrite, validate_file, _partial_path(path, tmp_dir), isolate,
                         stall_timeout, progress)
    finally:
        _JOBS.reset(token)
    return path


def _write_validated(nwbfile, path: Path, overwrite: bool, validate_file: bool, tmp: Path, isolate: bool | None,
                     stall_timeout: float | None, progress: Callable[[str], None] | None) -> None:
    """:func:`write_nwbfile`'s write (in a child or here), validation and rename; nothing left on failure."""
    blocker = fork_blocker()
    fork, why = _isolation_choice(isolate, blocker)
    try:
        if fork:
            _write_isolated(nwbfile, tmp, STALL_TIMEOUT if stall_timeout is None else stall_timeout,
                            safe=blocker is None, progress=progress)
        else:
            log.debug('writing %s in this process (%s)', tmp, why)
            _write_in_process(nwbfile, tmp, progress)
        _validate_and_rename(tmp, path, overwrite, validate_file, progress)
    except BaseException as e:  # nothing half-written stays, whatever happened
        # Windows cannot remove a file HDF5 left open: the next export (or batch) to it removes it
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        error, cause = _write_error(path, e)
        if error is e:
            raise
        raise error from cause
