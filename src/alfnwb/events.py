"""Task events across exported files: the trials table, and responses aligned to trial events by region.

:func:`read_trials` reads a file's NWB ``trials`` table back as brainbox's ``SessionLoader.load_trials()``
DataFrame. :func:`peri_event` counts the spikes of units selected with :func:`alfnwb.read_units`
(from files, folders, catalogs or URLs) around a trial event, by condition, file by file: only the
selected units' spikes and each file's trials table are read, so memory is bounded by one file's
selection. :func:`peri_event_by_region` averages its rates per brain region.

Spikes and task events share the session's main clock (see ``docs/nwb_layout.md``): a spike at
``t`` falls in bin ``k`` of a trial whose event is at ``e`` when
``e + edges[k] <= t < e + edges[k + 1]``, with ``edges = window[0] + bin_size * arange(n_bins + 1)``
and ``n_bins = round((window[1] - window[0]) / bin_size)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import AlfNwbError, DataWarning, NWBReadError
from .nwb import layout
from .nwb.reader import ExportedFile, decode, open_export
from .reanalysis import ID_COLUMNS, MAPPINGS, load_spike_times

__all__ = ['read_trials', 'peri_event', 'peri_event_by_region', 'bin_edges', 'REGION_COLUMNS']

#: Region columns of :func:`alfnwb.read_units` carried into :func:`peri_event`'s table.
REGION_COLUMNS = ['acronym', 'atlas_id', 'beryl_acronym', 'cosmos_acronym']
#: Queries (units x trials x bin edges) per vectorised step: bounds the memory of one step.
_CHUNK = 1 << 22


def trials_table(f: ExportedFile) -> pd.DataFrame | None:
    """The trials of an open file as ``SessionLoader.load_trials()`` returns them; None without a table.

    Columns in the file's order, ``start_time``/``stop_time`` renamed ``intervals_0``/``intervals_1``
    and placed last (where ``load_object(...).to_df()`` puts the intervals of ``_ibl_trials.table.pqt``).
    """
    if layout.TRIALS_PATH not in f:
        return None
    group = f[layout.TRIALS_PATH]
    names = [str(c) for c in decode(group.attrs['colnames'])]
    df = pd.DataFrame({c: decode(group[c][:]) for c in names if c not in layout.TRIALS_INTERVALS})
    for nwb, alf in layout.TRIALS_INTERVALS.items():
        df[alf] = group[nwb][:]
    return df


def read_trials(path) -> pd.DataFrame:
    """A file's trials, equal to brainbox's ``SessionLoader.load_trials()`` ``trials`` of its session.

    Parameters
    ----------
    path : str or pathlib.Path
        An exported NWB file, or an HTTP(S) URL of one.

    Returns
    -------
    pandas.DataFrame
        One row per trial: the IBL attributes under their names (NaN kept), ``intervals_0`` and
        ``intervals_1`` (trial start and end) last.
    """
    with open_export(path) as f:
        df = trials_table(f)
    if df is None:
        raise NWBReadError(f'{path}: no trials table ({layout.TRIALS_PATH}): exported without trials')
    return df


def bin_edges(window: tuple[float, float], bin_size: float) -> np.ndarray:
    """Bin edges relative to the event, s: ``window[0] + bin_size * arange(n_bins + 1)``."""
    if bin_size <= 0 or window[1] <= window[0]:
        raise AlfNwbError(f'window {tuple(window)} and bin size {bin_size}: need window[0] < window[1], bin > 0')
    n_bins = max(int(round((window[1] - window[0]) / bin_size)), 1)
    return window[0] + bin_size * np.arange(n_bins + 1)


def _conditions(trials: pd.DataFrame, by: list[str], label: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Each trial's condition code and the table of conditions (values of ``by``, NaN a value of its own)."""
    missing = [c for c in by if c not in trials]
    if missing:
        raise AlfNwbError(f'{label}: trials table has no column {", ".join(missing)}; '
                          f'columns: {", ".join(trials.columns)}')
    if not by:
        return np.zeros(len(trials), np.int64), pd.DataFrame(index=[0])
    groups = trials.groupby(by, dropna=False, sort=True)
    codes = groups.ngroup().to_numpy(np.int64)
    values = groups.size().reset_index()[by]
    return codes, values.reset_index(drop=True)


def _select_trials(trials: pd.DataFrame, select, label: str) -> pd.DataFrame:
    """The trials kept: all, a ``DataFrame.query`` string, a boolean mask or a callable giving one."""
    if select is None:
        return trials
    try:
        mask = trials.eval(select) if isinstance(select, str) else (select(trials) if callable(select) else select)
    except Exception as e:  # noqa: BLE001 - pandas raises many kinds for a bad expression
        raise AlfNwbError(f'{label}: trials selection {select!r}: {e}') from None
    return trials[np.asarray(mask, dtype=bool)]


def aligned_counts(spike_times: Sequence[np.ndarray], events: np.ndarray, codes: np.ndarray, n_conditions: int,
                   edges: np.ndarray) -> np.ndarray:
    """Spike counts of units around events, summed over the trials of each condition, fully vectorised.

    Each unit's spikes (sorted) and the bin edges of every event are searched in one
    ``np.searchsorted`` per block of units: the units' trains are concatenated as complex keys
    ``unit + 1j * time``, which numpy orders lexicographically (unit, then time), so that a query
    ``unit + 1j * (event + edge)`` finds its place inside its own unit's train, with no arithmetic on
    the times (exactly ``np.searchsorted(times, event + edge)`` per unit).

    Parameters
    ----------
    spike_times : sequence of numpy.ndarray
        Each unit's spike times, sorted.
    events : numpy.ndarray
        Event times (finite), one per trial.
    codes : numpy.ndarray
        Each trial's condition (0..n_conditions-1).
    n_conditions : int
    edges : numpy.ndarray
        Bin edges relative to the event (:func:`bin_edges`).

    Returns
    -------
    numpy.ndarray
        int64 (units, conditions, bins): spikes with ``event + edges[k] <= t < event + edges[k + 1]``.
    """
    n_units, n_bins = len(spike_times), edges.size - 1
    out = np.zeros((n_units, n_conditions, n_bins), dtype=np.int64)
    if n_units == 0 or events.size == 0:
        return out
    onehot = np.zeros((events.size, n_conditions), dtype=np.int64)
    onehot[np.arange(events.size), codes] = 1
    queries_t = (events[:, None] + edges[None, :]).ravel()  # (trials x edges), the same for every unit
    step = max(1, _CHUNK // queries_t.size)
    for a in range(0, n_units, step):  # blocks of units: memory bounded by _CHUNK queries
        block = spike_times[a:a + step]
        sizes = np.fromiter((t.size for t in block), dtype=np.int64, count=len(block))
        keys = np.empty(int(sizes.sum()), dtype=np.complex128)
        keys.real = np.repeat(np.arange(len(block), dtype=np.float64), sizes)
        keys.imag = np.concatenate(block) if len(block) else np.zeros(0)
        queries = np.empty((len(block), queries_t.size), dtype=np.complex128)
        queries.real = np.arange(len(block), dtype=np.float64)[:, None]
        queries.imag = queries_t[None, :]
        idx = np.searchsorted(keys, queries.ravel(), side='left').reshape(len(block), events.size, n_bins + 1)
        counts = np.diff(idx, axis=2)  # (units, trials, bins)
        out[a:a + step] = np.einsum('utb,tc->ucb', counts, onehot)
    return out


def peri_event(units: pd.DataFrame, event: str, window: tuple[float, float] = (-0.2, 0.5), bin_size: float = 0.01,
               by: str | Sequence[str] | None = None,
               trials: str | Callable | np.ndarray | None = None) -> pd.DataFrame:
    """Spike counts and rates of units around a trial event, by condition, across files.

    Parameters
    ----------
    units : pandas.DataFrame
        From :func:`alfnwb.read_units` (any source: files, folders, catalogs, URLs).
    event : str
        A trials column of event times: ``stimOn_times``, ``firstMovement_times``, ``feedback_times``, ...
    window : (float, float)
        Bins from ``window[0]`` to ``window[1]`` s around the event.
    bin_size : float
        s; the edges are :func:`bin_edges`.
    by : str or list of str, optional
        Trials columns whose values make the conditions (``contrastLeft``, ``choice``,
        ``probabilityLeft``); NaN is a value of its own (e.g. ``contrastLeft`` of right-side trials).
    trials : str, callable or boolean array, optional
        The trials to use in every file: a ``DataFrame.eval`` expression on the trials table
        (``'feedbackType == 1'``), a function of the table returning a mask, or a mask.

    Returns
    -------
    pandas.DataFrame
        One row per unit, condition and bin: the unit's :data:`~alfnwb.reanalysis.ID_COLUMNS` and
        region columns, the ``by`` values, ``event``, ``time`` (bin centre, s from the event),
        ``spike_count`` (summed over trials), ``n_trials`` (trials of the condition with a finite event
        time), ``n_trials_nan`` (trials of the condition left out because their event time is NaN) and
        ``rate`` (Hz: spike_count / n_trials / bin_size; NaN without trials). Files without a trials
        table are left out with a :class:`~alfnwb.errors.DataWarning`.
    """
    by = [by] if isinstance(by, str) else list(by or [])
    edges = bin_edges(window, bin_size)
    frames = [part for file, sel in units.groupby('file', sort=False)
              if (part := _peri_event_file(str(file), sel, event, edges, by, trials)) is not None]
    if frames:
        return pd.concat(frames, ignore_index=True)
    cols = [c for c in ID_COLUMNS + REGION_COLUMNS if c in units] + by + ['event', 'time', 'spike_count', 'n_trials',
                                                                          'n_trials_nan', 'rate']
    return pd.DataFrame(columns=cols)


def _file_trials(file: str, event: str, select) -> tuple[pd.DataFrame | None, str]:
    """A file's trials (selected) and its eid; None (with a warning) when it has no trials table."""
    with open_export(file) as f:
        trials, eid = trials_table(f), f.text(layout.SESSION_PATHS['eid'])
    if trials is None:
        warnings.warn(DataWarning(f'session {eid}: {file}: no trials table ({layout.TRIALS_PATH}): its units are '
                                  f'left out of peri_event'), stacklevel=3)
        return None, eid
    if event not in trials:
        raise AlfNwbError(f'{file}: trials table has no event column {event!r}; columns: {", ".join(trials.columns)}')
    return _select_trials(trials, select, file), eid


def _peri_event_file(file: str, sel: pd.DataFrame, event: str, edges: np.ndarray, by: list[str],
                     select) -> pd.DataFrame | None:
    """:func:`peri_event` on one file's selected units: its trials table, then only those units' spikes."""
    trials, _ = _file_trials(file, event, select)
    if trials is None:
        return None
    codes, conditions = _conditions(trials, by, file)
    ev = trials[event].to_numpy(dtype=np.float64)
    ok = np.isfinite(ev)
    n_cond, n_bins = len(conditions), edges.size - 1
    n_trials = np.bincount(codes[ok], minlength=n_cond)
    n_nan = np.bincount(codes[~ok], minlength=n_cond)
    counts = aligned_counts(load_spike_times(sel), ev[ok], codes[ok], n_cond, edges)
    unit = np.repeat(np.arange(len(sel)), n_cond * n_bins)
    cond = np.tile(np.repeat(np.arange(n_cond), n_bins), len(sel))
    k = np.tile(np.arange(n_bins), len(sel) * n_cond)
    out = sel[[c for c in ID_COLUMNS + REGION_COLUMNS if c in sel]].iloc[unit].reset_index(drop=True)
    for c in by:
        out[c] = conditions[c].to_numpy()[cond]
    out['event'] = event
    out['time'] = ((edges[:-1] + edges[1:]) / 2)[k]
    out['spike_count'] = counts.ravel()
    out['n_trials'] = n_trials[cond]
    out['n_trials_nan'] = n_nan[cond]
    with np.errstate(invalid='ignore', divide='ignore'):
        out['rate'] = np.where(out['n_trials'] > 0, out['spike_count'] / (out['n_trials'] * (edges[1] - edges[0])),
                               np.nan)
    return out


def peri_event_by_region(psth: pd.DataFrame, mapping: str = 'Beryl') -> pd.DataFrame:
    """Mean and SEM across units of :func:`peri_event` rates, per region, condition and bin.

    Parameters
    ----------
    psth : pandas.DataFrame
        From :func:`peri_event`.
    mapping : {'Allen', 'Beryl', 'Cosmos'}
        The region column to group by (``acronym``, ``beryl_acronym``, ``cosmos_acronym``).

    Returns
    -------
    pandas.DataFrame
        ``region``, the conditions, ``event``, ``time``, ``rate_mean``, ``rate_sem`` (std/sqrt(n),
        ddof 1; NaN for one unit) and ``n_units`` (units with trials in that condition).
    """
    if mapping not in MAPPINGS:
        raise AlfNwbError(f'mapping must be one of {", ".join(MAPPINGS)}, not {mapping!r}')
    column = layout.MAPPINGS[mapping]
    if column not in psth:
        raise AlfNwbError(f'peri_event table has no {column} column (mapping {mapping})')
    known = set(ID_COLUMNS + REGION_COLUMNS) | {'event', 'time', 'spike_count', 'n_trials', 'n_trials_nan', 'rate'}
    by = [c for c in psth.columns if c not in known]
    keys = [column] + by + ['event', 'time']
    g = psth.groupby(keys, dropna=False, sort=True)['rate']
    out = g.agg(rate_mean='mean', rate_std='std', n_units='count').reset_index()
    out['rate_sem'] = out.pop('rate_std') / np.sqrt(out['n_units'])
    out = out.rename(columns={column: 'region'})
    return out[['region'] + by + ['event', 'time', 'rate_mean', 'rate_sem', 'n_units']]
