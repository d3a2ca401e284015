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



# ---------------------------------------------------------------------------------------------------
# ndx-spikesorting
# ---------------------------------------------------------------------------------------------------



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




# ---------------------------------------------------------------------------------------------------
# dandi
# ---------------------------------------------------------------------------------------------------



# ---------------------------------------------------------------------------------------------------
# mtscomp
# ---------------------------------------------------------------------------------------------------
