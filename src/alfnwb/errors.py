"""The one exception hierarchy of alfnwb.

Every error a user can cause derives from :class:`AlfNwbError`; its message is one line that names
the insertion (or session) and the dataset concerned. The command line prints that line and exits
with :attr:`AlfNwbError.exit_code`.
"""

from __future__ import annotations


class AlfNwbError(Exception):
    """Base class of every user-facing alfnwb error."""

    exit_code = 1


class NotFoundError(AlfNwbError):
    """A pid, eid or probe is not known to the ONE instance."""

    exit_code = 3


class SorterNotFoundError(NotFoundError):
    """The requested spike sorter or revision does not exist for an insertion."""


class HistologyError(AlfNwbError):
    """Histology is below the level the user required, or cannot be resolved."""

    exit_code = 4


class AtlasRequiredError(HistologyError):
    """Channel locations need the Allen annotation volume and no atlas was given."""


class InvalidDataError(AlfNwbError):
    """ALF data that is inconsistent or corrupt."""

    exit_code = 5


class MetadataError(AlfNwbError):
    """A metadata file that cannot be read, or with unknown or ill-typed keys."""

    exit_code = 6


class OutputError(AlfNwbError):
    """The output path cannot be written (exists, not writable, ...)."""

    exit_code = 7


class NWBReadError(AlfNwbError):
    """An NWB file that does not have the layout alfnwb writes."""

    exit_code = 8
