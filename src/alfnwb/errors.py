"""The one exception hierarchy of alfnwb, and the one warning hierarchy of its degradations.

Every error a user can cause derives from :class:`AlfNwbError`; its message is one line that names
the insertion (or session) and the dataset concerned. The command line prints that line and exits
with :attr:`AlfNwbError.exit_code`. Every degradation (data left out, a fallback taken) is an
:class:`AlfNwbWarning`, never silent: printed, and recorded in the file and the batch manifest.
"""

from __future__ import annotations

import contextlib
import warnings


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


class InternalError(AlfNwbError):
    """A failure that is not the user's (a bug, or a library failing unexpectedly).

    The message is one line naming the output and the original exception's type and message; the
    original traceback is chained as ``__cause__`` (``--debug`` shows it). Exit code 70 is
    ``EX_SOFTWARE``, the code the command line gives any unexpected exception.
    """

    exit_code = 70


class NetworkError(AlfNwbError):
    """Alyx or the file server failed: unreachable, no answer in time, HTTP 5xx, credentials refused,
    or a download cut off. Not a statement that the data do not exist (that is :class:`NotFoundError`)."""

    exit_code = 11


class AlfNwbWarning(UserWarning):
    """Base class of every degradation alfnwb tells the user about (data left out, a fallback taken).

    Each message is one line that starts with ``insertion <pid>:`` (or ``session <eid>:``). The
    command line prints each once as ``alfnwb: warning: <message>``; the file records it in the
    provenance table's ``warnings`` column and a batch in its manifest. With ``strict=True``
    (``--strict``) it is raised as an error, and the command line exits with :attr:`exit_code`: the
    code of the error of its kind.
    """

    exit_code = 10


class HistologyWarning(AlfNwbWarning):
    """A probe is exported without the channel locations it should have (e.g. Alyx unreachable)."""

    exit_code = HistologyError.exit_code


class DataWarning(AlfNwbWarning):
    """ALF data that is incomplete or inconsistent in a way that can be worked around (and is)."""

    exit_code = InvalidDataError.exit_code


class PerformanceWarning(UserWarning):
    """A setting outside alfnwb that makes it slower (not a degradation of the data: nothing is
    recorded in the files, and ``--strict`` does not refuse it). One line, printed once by the
    command line as ``alfnwb: warning: <message>``, with what to change."""


def warning_subject(message: str) -> str:
    """The insertion (pid) or session (eid) a warning message names: ``'insertion <pid>: ...'`` -> pid.

    >>> warning_subject('insertion 1f2e: no spikes.samples')
    '1f2e'
    >>> warning_subject('something else')
    ''
    """
    head = str(message).split(':', 1)[0].split()
    return head[1] if len(head) == 2 and head[0] in ('insertion', 'session') else ''


class WarningLog:
    """The alfnwb warnings raised so far inside :func:`recorded_warnings`, live."""

    def __init__(self, caught: list):
        self._caught = caught

    def messages(self, subject: str | None = None) -> list[str]:
        """Messages of alfnwb's warnings (of one pid or eid), once each, in the order raised."""
        out = [str(w.message) for w in self._caught if issubclass(w.category, AlfNwbWarning)]
        if subject is not None:
            out = [m for m in out if warning_subject(m) == subject]
        return list(dict.fromkeys(out))


@contextlib.contextmanager
def recorded_warnings(strict: bool = False):
    """Record alfnwb's warnings raised inside (to write them into the file) and pass every warning on.

    Parameters
    ----------
    strict : bool
        Raise alfnwb's warnings as errors instead (``--strict``).

    Yields
    ------
    WarningLog
        Filled as warnings are raised.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('error' if strict else 'always', AlfNwbWarning)
        try:
            yield WarningLog(caught)
        finally:
            pending = list(caught)
    for w in pending:  # shown by whoever listens outside (the command line, pytest, the user)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
