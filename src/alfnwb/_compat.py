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




# ---------------------------------------------------------------------------------------------------
# brainbox (ibllib)
# ---------------------------------------------------------------------------------------------------

# Relies on: subclassing brainbox.io.one.SpikeSortingLoader, overriding load_channels, and its files/pid/one/
# histology attributes. Written against ibllib 4.1.0; pyproject bounds ibllib <5.
def spike_sorting_loader_class():
    """brainbox's ``SpikeSortingLoader``, with the Alyx histology look-up tolerant of an offline database.

    Relies on subclassing ``brainbox.io.one.SpikeSortingLoader`` (a dataclass) and overriding its
    ``load_channels(**kwargs)``, which ``load_spike_sorting`` calls; on its attributes ``files``
    (ALF object name -> list of loaded file paths), ``pid``, ``one`` and ``histology`` (``''`` meaning
    no histology); and on ``load_channels`` raising ``requests`` ``ConnectionError``, ``IndexError`` or
    ``KeyError`` when Alyx (or ONE's REST cache) has no insertion/trajectory record. Written against
    ibllib 4.1.0 (bounded ``<5`` in pyproject.toml).

    Returns
    -------
    type
        A ``SpikeSortingLoader`` subclass: when the Alyx look-up fails it raises
        :class:`~alfnwb.errors.InvalidDataError` if the ALF histology file is unreadable, otherwise
        warns and loads the channels without locations.
    """
    import warnings

    import numpy as np
    import requests
    from brainbox.io.one import SpikeSortingLoader
    from one.alf import io as alfio

    from .errors import AlfNwbError, InvalidDataError

    class _Loader(SpikeSortingLoader):
        def load_channels(self, **kwargs):
            try:
                return super().load_channels(**kwargs)
            except AlfNwbError:
                raise
            except (requests.exceptions.ConnectionError, IndexError, KeyError) as e:
                ids_file = next((f for f in self.files.get('channels', [])
                                 if 'brainLocationIds_ccf_2017' in f.name), None)
                if ids_file is not None:  # alf-level histology that brainbox could not look up
                    from .atlas import region_columns

                    region_columns(np.load(ids_file, allow_pickle=False),
                                   context=f'insertion {self.pid}: {ids_file.name}: ')
                    raise InvalidDataError(f'insertion {self.pid}: {ids_file.name}: cannot be read ({e})') from None
                # A local OneAlyx whose REST cache has no record of this insertion: no histology.
                warnings.warn(f'insertion {self.pid}: Alyx histology records unavailable ({type(e).__name__}); '
                              f'exporting without channel locations')
                self.histology = ''
                return alfio.load_object(self.files['channels'], wildcards=self.one.wildcards)

    return _Loader


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
