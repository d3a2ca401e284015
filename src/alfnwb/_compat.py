"""Every use of a third-party internal, in one place.

Each function here relies on something its package does not promise (a private name, a class we
subclass, a constructor meant for the package's own use). Each says what it relies on and the
version range it was written against; ``pyproject.toml`` bounds those packages accordingly. Code
elsewhere in alfnwb uses public APIs only, or calls these.
"""

from __future__ import annotations


# ---------------------------------------------------------------------------------------------------
# SpikeInterface
# ---------------------------------------------------------------------------------------------------
# Written against spikeinterface 0.105 (pyproject: <0.106).

def memory_analyzer(sorting, recording, sparsity, rec_attributes: dict):
    """An in-memory SortingAnalyzer, with or without a recording.

    Relies on ``SortingAnalyzer.create_memory(..., rec_attributes=...)``: the public
    ``create_sorting_analyzer`` needs a recording, and an analyzer read back from a file has none;
    ``rec_attributes`` (channel ids, sampling rate, probe group, ...) stand for it.
    """
    from spikeinterface.core import SortingAnalyzer

    return SortingAnalyzer.create_memory(sorting, recording, sparsity=sparsity, return_in_uV=True,
                                         peak_sign='neg', peak_mode='extremum', rec_attributes=rec_attributes,
                                         copy_sorting=False)


def inject_extension(analyzer, name: str, params: dict, data: dict) -> None:
    """Set an extension's params and data as if SpikeInterface had computed them.

    Data go through the public ``AnalyzerExtension.set_data``. Params are assigned, not passed to
    ``set_params``: that validates them against SpikeInterface's own methods, and the extensions
    taken from ALF (``method='alf'``, ``source='ibl'``) have none. Relies on
    ``spikeinterface.core.sortinganalyzer.get_extension_class``, the ``params``/``run_info``
    attributes and the analyzer's ``extensions`` dict.
    """
    from spikeinterface.core.sortinganalyzer import get_extension_class

    ext = get_extension_class(name)(analyzer)
    ext.params = params
    for key, value in data.items():
        ext.set_data(key, value)
    ext.run_info = {'run_completed': True, 'runtime_s': 0.0}
    analyzer.extensions[name] = ext


# ---------------------------------------------------------------------------------------------------
# ndx-spikesorting
# ---------------------------------------------------------------------------------------------------
# Written against ndx-spikesorting 0.1.0 (pyproject: <0.2).

def extension_array(analyzer, name: str, key: str):
    """An extension's stored array itself, where ``get_data()`` would concatenate it into a copy.

    For a single-segment in-memory analyzer ``get_data()`` of ``spike_amplitudes`` and
    ``spike_locations`` copies the whole per-spike array (4-8 bytes a spike, at the peak of an
    export). Relies on ``AnalyzerExtension.data`` (the dict ``set_data`` fills), SpikeInterface 0.105;
    falls back to ``get_data()`` without it.
    """
    ext = analyzer.get_extension(name)
    data = getattr(ext, 'data', None)
    return data[key] if isinstance(data, dict) and key in data else ext.get_data()


def units_metrics_class():
    """The table type of per-unit metrics: ``UnitsMetrics`` in 0.1.0 (renamed upstream since)."""
    import ndx_spikesorting

    return ndx_spikesorting.UnitsMetrics


# ---------------------------------------------------------------------------------------------------
# ONE
# ---------------------------------------------------------------------------------------------------

# Relies on: One._cache (private attribute). Written against ONE-api 3.6.1; pyproject bounds ONE-api <4.
def one_insertions_table(one):
    """The insertions table of ONE's in-memory cache (as read from ``insertions.pqt``), or None.

    Relies on ``One._cache``, ONE's private dict-like bunch of cache tables: ``_cache.get('insertions')``
    is a DataFrame indexed by (``eid``, ``id``) with ``name`` and ``model`` columns, or None when the
    cache folder has no ``insertions.pqt``. ONE 3.x has no public accessor for it
    (``One._search_insertions`` reads the same attribute; the public ``search_insertions`` exists on
    ``OneAlyx`` only). Written against ONE-api 3.6.1 (bounded ``<4`` in pyproject.toml).
    """
    return one._cache.get('insertions') if hasattr(one, '_cache') else None


import threading  # noqa: E402 - this section's only module-level need, kept beside it


class _TimedRequests:
    """The ``requests`` module as ``one.webclient`` sees it, with a timeout on its request functions."""

    _CALLS = ('request', 'get', 'post', 'put', 'patch', 'delete', 'head')

    def __init__(self, module, seconds: float):
        self._module, self._seconds = module, seconds

    def __getattr__(self, name):
        import functools

        attr = getattr(self._module, name)
        if name not in self._CALLS:
            return attr

        @functools.wraps(attr)  # keeps __name__: ONE's REST cache tells GET from POST by it
        def timed(*args, **kwargs):
            kwargs.setdefault('timeout', self._seconds)
            return attr(*args, **kwargs)

        return timed


class _OneHttpTimeout:
    """The context of :func:`one_http_timeout`: installed by the first of nested or concurrent uses,
    restored by the last."""

    _lock = threading.Lock()
    _depth = 0
    _saved: tuple = (None, None)

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        import socket

        import one.webclient as webclient

        with self._lock:
            if _OneHttpTimeout._depth == 0:
                _OneHttpTimeout._saved = (webclient.requests, socket.getdefaulttimeout())
                webclient.requests = _TimedRequests(webclient.requests, self.seconds)
                if _OneHttpTimeout._saved[1] is None:
                    socket.setdefaulttimeout(self.seconds)
            _OneHttpTimeout._depth += 1
        return self

    def __exit__(self, *exc):
        import socket

        import one.webclient as webclient

        with self._lock:
            _OneHttpTimeout._depth -= 1
            if _OneHttpTimeout._depth == 0:
                webclient.requests, default = _OneHttpTimeout._saved
                socket.setdefaulttimeout(default)
        return False


# Relies on: one.webclient calling requests through its module attribute `requests`, and
# http_download_file calling urllib's urlopen without a timeout. Written against ONE-api 3.6.1 (<4).
def one_http_timeout(seconds: float) -> _OneHttpTimeout:
    """A context inside which every HTTP request ONE makes fails after ``seconds`` without an answer.

    ONE sets no timeout: a server that accepts a connection and never answers blocks it for ever.
    Relies on ``one.webclient`` sending its REST requests and its ``/auth-token`` login through its
    module attribute ``requests`` (``requests.get``, ``requests.post``, ...), replaced here by a proxy
    that passes ``timeout=seconds``; and on ``one.webclient.http_download_file`` opening files with
    ``urllib.request.urlopen`` without a timeout, which then takes ``socket.getdefaulttimeout()``, set
    here to ``seconds`` unless the program set one. Both are process-wide: they are installed by the
    first of nested or concurrent uses (its ``seconds`` apply) and restored when the last one ends.
    Each bounds a wait for data, not a whole download. Written against ONE-api 3.6.1 (bounded ``<4``
    in pyproject.toml).

    Parameters
    ----------
    seconds : float
        Longest wait for a connection or for the next bytes of an answer.

    Returns
    -------
    context manager
    """
    return _OneHttpTimeout(seconds)


# ---------------------------------------------------------------------------------------------------
# iblutil
# ---------------------------------------------------------------------------------------------------
#: Read size of ONE's md5 checks (1 MiB). ONE checks the md5 of every dataset it loads from disk with
#: iblutil.io.hashfile, which allocates and zeroes a 256 MB buffer for every file: ~0.3 s and 256 MB
#: of memory per file, a third of a small export's time. The hashes are the same with any read size.
HASH_READ_SIZE = 1 << 20


# Relies on: iblutil.io.hashfile reading its module constant BUF_SIZE at each call. Written against
# iblutil 1.20; pyproject bounds iblutil <2.
def fast_md5_checks() -> None:
    """Make ONE's md5 checks of loaded files read 1 MiB at a time (same hashes, no 256 MB buffer per file)."""
    from iblutil.io import hashfile

    hashfile.BUF_SIZE = min(getattr(hashfile, 'BUF_SIZE', HASH_READ_SIZE), HASH_READ_SIZE)


# ---------------------------------------------------------------------------------------------------
# brainbox (ibllib)
# ---------------------------------------------------------------------------------------------------

# Relies on: subclassing brainbox.io.one.SpikeSortingLoader, overriding load_channels, and its files/pid/one/
# eid/pname/histology attributes. Written against ibllib 4.1.0; pyproject bounds ibllib <5.
def spike_sorting_loader_class():
    """brainbox's ``SpikeSortingLoader``, whose Alyx histology look-up fails precisely.

    Relies on subclassing ``brainbox.io.one.SpikeSortingLoader`` (a dataclass) and overriding its
    ``load_channels(**kwargs)``, which ``load_spike_sorting`` calls; on its attributes ``files``
    (ALF object name -> list of loaded file paths), ``pid``, ``eid``, ``pname``, ``one`` and
    ``histology`` (``''`` meaning no histology); and on ``load_channels`` raising ``requests``'
    ``ConnectionError`` when Alyx cannot be reached, ``IndexError`` or ``KeyError`` when an Alyx
    insertion or trajectory record (or an atlas id of ``channels.brainLocationIds_ccf_2017``) is
    missing, and ONE's ``ValueError`` about a missing username when ONE has no Alyx login. Written
    against ibllib 4.1.0 (bounded ``<5`` in pyproject.toml).

    Returns
    -------
    type
        A ``SpikeSortingLoader`` subclass. A missing record or unknown atlas id raises
        :class:`~alfnwb.errors.InvalidDataError` naming the insertion and the records or file; no
        login to fetch the records, :class:`~alfnwb.errors.HistologyError`. Alyx unreachable from
        an offline ONE (local mode, its REST cache without the records) is a
        :class:`~alfnwb.errors.HistologyWarning` and the channels are loaded without locations; from
        an online ONE the connection error is raised, for the caller to report.
    """
    import requests
    from brainbox.io.one import SpikeSortingLoader

    from .errors import AlfNwbError

    class _Loader(SpikeSortingLoader):
        def load_channels(self, **kwargs):
            try:
                return super().load_channels(**kwargs)
            except AlfNwbError:
                raise
            except (IndexError, KeyError) as e:
                raise _missing_record_error(self, e) from e
            except ValueError as e:
                if 'username' not in str(e):
                    raise
                raise _no_login_error(self) from e
            except requests.exceptions.ConnectionError:
                if not getattr(self.one, 'offline', True):
                    raise  # online, a network failure: not a reason to export without locations
                return _channels_without_locations(self)

    return _Loader


def _missing_record_error(loader, e: Exception):
    """The :class:`InvalidDataError` of a missing Alyx record, or of an atlas id of the ALF file, naming it."""
    import numpy as np

    from .errors import InvalidDataError

    ids_file = next((f for f in loader.files.get('channels', []) if 'brainLocationIds_ccf_2017' in f.name), None)
    if ids_file is not None:  # alf-level histology that brainbox could not look up
        from .atlas import region_columns

        region_columns(np.load(ids_file, allow_pickle=False), context=f'insertion {loader.pid}: {ids_file.name}: ')
        return InvalidDataError(f'insertion {loader.pid}: {ids_file.name}: cannot be read ({e})')
    what = 'a list came back empty' if isinstance(e, IndexError) else f'no field {e}'
    return InvalidDataError(
        f'insertion {loader.pid}: Alyx histology records (insertions?session={loader.eid}&name={loader.pname}, '
        f'trajectories "Ephys aligned histology track") are missing or incomplete: {what}')


def _no_login_error(loader):
    """The :class:`HistologyError` of records that are not in ONE's REST cache, with no login to fetch them."""
    from .errors import HistologyError

    return HistologyError(f'insertion {loader.pid}: the Alyx histology records of {loader.pname} are not in ONE\'s '
                          f'REST cache and ONE has no Alyx login to fetch them: log in once, or use a ONE without '
                          f'Alyx (histology none)')


def _channels_without_locations(loader) -> dict:
    """The ALF channels, without locations, after a :class:`HistologyWarning` (Alyx unreachable offline)."""
    import warnings

    from one.alf import io as alfio

    from .errors import HistologyWarning

    warnings.warn(HistologyWarning(
        f'insertion {loader.pid}: Alyx histology records unavailable offline (not in ONE\'s REST cache, '
        f'{loader.one.alyx.base_url} unreachable); exporting without channel locations'))
    loader.histology = ''
    return alfio.load_object(loader.files['channels'], wildcards=loader.one.wildcards)


# Relies on: the private SessionLoader._find_behaviour_collection. Written against ibllib 4.1.0 (<5).
def trials_collection(session_loader) -> str:
    """The collection ``SessionLoader.load_trials()`` loads the trials from when given none.

    Relies on ``brainbox.io.one.SessionLoader._find_behaviour_collection('trials')`` (private): the
    collection of ``_ibl_trials.table.pqt``, ``'alf'`` when there is none; raises
    ``ALFMultipleCollectionsFound`` when several collections hold one. Written against ibllib 4.1.0
    (bounded ``<5`` in pyproject.toml).
    """
    return session_loader._find_behaviour_collection('trials')


# ---------------------------------------------------------------------------------------------------
# dandi
# ---------------------------------------------------------------------------------------------------



# ---------------------------------------------------------------------------------------------------
# mtscomp
# ---------------------------------------------------------------------------------------------------

def mtscomp_writer(**kwargs):
    """An ``mtscomp.Writer`` that compresses at its own ``comp_level`` setting.

    Parameters
    ----------
    **kwargs
        ``mtscomp.Writer``'s arguments (``chunk_duration``, ``comp_level``, ``do_time_diff``, ...).

    Returns
    -------
    mtscomp.Writer
        mtscomp 1.0.2 records ``comp_level`` in the ``.ch`` file but always calls ``zlib.compress``
        at zlib's default level (6), ~10x slower on noise than level 1 for a similar size. The
        output is a standard mtscomp file: any zlib level decompresses the same way.
    """
    # Relies on (written against mtscomp 1.0.2): the private ``Writer._compress_chunk(chunk_idx)``,
    # called once per chunk by ``Writer.compress_batch`` and returning ``(chunk_idx, (chunk, zlib
    # bytes))``; the attributes ``do_time_diff``, ``do_spatial_diff``, ``chunk_order``, ``comp_level``
    # set by ``Writer.__init__``; ``Writer.get_chunk`` and ``mtscomp.diff_along_axis``. The override
    # is 1.0.2's method without its asserts and logging, with ``comp_level`` passed to zlib.
    import zlib

    import mtscomp

    if not hasattr(mtscomp.Writer, '_compress_chunk'):  # a newer mtscomp: its own writer, slower but right
        return mtscomp.Writer(**kwargs)

    class Writer(mtscomp.Writer):
        def _compress_chunk(self, chunk_idx):
            chunk = self.get_chunk(chunk_idx)
            chunkd = mtscomp.diff_along_axis(chunk, axis=0 if self.do_time_diff else None)
            chunkd = mtscomp.diff_along_axis(chunkd, axis=1 if self.do_spatial_diff else None)
            return chunk_idx, (chunk, zlib.compress(chunkd.tobytes(order=self.chunk_order), self.comp_level))

    return Writer(**kwargs)
