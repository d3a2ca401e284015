"""IBL's extracted waveforms (``waveforms.*``) as arrays the analyzer and the units table use.

IBL's ``extract_wfs_cbin`` writes up to 256 waveforms per cluster, each cut on the neighbourhood
of its spike's peak channel (raw channel indices; the raw channel count pads the neighbourhoods
beyond the probe ends, with NaN traces), in volts. Two on-disk layouts exist: flat (version 2,
(waveforms, channels, samples)) and per cluster (version 1, (clusters, waveforms, channels,
samples), missing waveforms as NaN table rows, ``-1`` channel rows and zero traces).

Here both become the same flat view of the real waveforms (:func:`flat_waveforms`), and a
waveform is read on any list of ALF channels (:func:`on_channels`): a channel its neighbourhood
does not cover is NaN, never zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ['waveform_rows', 'flat_waveforms', 'on_channels', 'select', 'covered_mask', 'TROUGH_SAMPLE']

#: Sample of the spike in each IBL waveform (``extract_wfs_cbin``'s ``trough_offset``).
TROUGH_SAMPLE = 42


def waveform_rows(waveforms: dict) -> np.ndarray:
    """Which rows of IBL's waveform table hold a waveform (the per-cluster layout pads with NaN rows)."""
    return waveforms['table']['sample'].notna().to_numpy()


def flat_waveforms(waveforms: dict, raw_ind: np.ndarray) -> dict:
    """The real waveforms of either layout, sorted by cluster then sample.

    Parameters
    ----------
    waveforms : dict
        :attr:`alfnwb.model.ProbeData.waveforms`.
    raw_ind : numpy.ndarray
        ``channels.rawInd``: the raw channel of each ALF channel.

    Returns
    -------
    dict
        ``traces`` (n, channels, samples) float32 V, ``cluster``, ``sample`` (int64), ``channels``
        (n, channels): the ALF channel of each trace row, -1 where the neighbourhood leaves the
        probe or the raw channel is not one of the ALF channels.
    """
    valid = waveform_rows(waveforms)
    traces = np.asarray(waveforms['traces'])
    traces = traces.reshape(-1, *traces.shape[-2:])[valid]
    table = waveforms['table']
    cluster = table['cluster'].to_numpy()[valid].astype(np.int64)
    sample = table['sample'].to_numpy()[valid].astype(np.int64)
    raw = np.asarray(waveforms['channels'])[valid].astype(np.int64)
    raw_ind = np.asarray(raw_ind).astype(np.int64)
    lut = np.full(max(int(raw.max(initial=0)), int(raw_ind.max(initial=0))) + 2, -1, dtype=np.int64)
    lut[raw_ind] = np.arange(raw_ind.size)
    order = np.lexsort((sample, cluster))
    return {'traces': traces[order].astype(np.float32, copy=False), 'cluster': cluster[order],
            'sample': sample[order], 'channels': lut[np.where(raw < 0, lut.size - 1, raw)][order]}


def on_channels(flat: dict, rows: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Waveforms ``rows`` of :func:`flat_waveforms` on given ALF channels, NaN where not covered.

    Parameters
    ----------
    flat : dict
        From :func:`flat_waveforms`.
    rows : numpy.ndarray
        Rows to take (int).
    channels : numpy.ndarray
        (len(rows), k) ALF channel wanted at each position (-1: none).

    Returns
    -------
    numpy.ndarray
        (len(rows), k, samples) float32, V.
    """
    ch = flat['channels'][rows]  # (n, nc)
    n_alf = max(int(ch.max(initial=-1)), int(channels.max(initial=-1))) + 2
    lut = np.full((rows.size, n_alf), -1, dtype=np.int32)  # ALF channel -> column of the trace
    r = np.broadcast_to(np.arange(rows.size)[:, None], ch.shape)
    inside = ch >= 0
    lut[r[inside], ch[inside]] = np.broadcast_to(np.arange(ch.shape[1]), ch.shape)[inside]
    col = lut[np.arange(rows.size)[:, None], np.where(channels < 0, n_alf - 1, channels)]  # (n, k)
    out = flat['traces'][rows[:, None], np.maximum(col, 0)]  # (n, k, samples)
    out[col < 0] = np.nan
    return out


def select(flat: dict, vector: np.ndarray, n_units: int, max_per_unit: int | None, seed: int = 0) -> dict:
    """The IBL waveforms the analyzer keeps, matched to its spike vector.

    Parameters
    ----------
    flat : dict
        From :func:`flat_waveforms`.
    vector : numpy.ndarray
        SpikeInterface's spike vector (``sample_index``, ``unit_index``; unit index = cluster).
    n_units : int
    max_per_unit : int or None
        Keep at most this many waveforms per unit: a seeded random subset of IBL's (all if None).
    seed : int

    Returns
    -------
    dict
        ``spikes``: spike-vector index of each kept waveform, ascending; ``rows``: its row in
        ``flat``; ``per_unit``: kept waveforms per unit.

    Raises
    ------
    ValueError
        A waveform matches no spike of its cluster.
    """
    n = flat['cluster'].size
    if max_per_unit is not None and n:
        key = np.random.default_rng(seed).random(n)
        order = np.lexsort((key, flat['cluster']))
        starts = np.searchsorted(flat['cluster'][order], flat['cluster'][order], side='left')
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts
        rows = np.flatnonzero(rank < max_per_unit)
    else:
        rows = np.arange(n)
    shift = np.int64(2) ** 40
    vkey = vector['unit_index'].astype(np.int64) * shift + vector['sample_index'].astype(np.int64)
    vorder = np.argsort(vkey, kind='stable')
    wkey = flat['cluster'][rows] * shift + flat['sample'][rows]
    pos = np.minimum(np.searchsorted(vkey[vorder], wkey), max(vkey.size - 1, 0))
    if rows.size and (vkey.size == 0 or not np.array_equal(vkey[vorder][pos], wkey)):
        raise ValueError('waveforms.table holds waveforms that match no spike')
    spikes = vorder[pos] if rows.size else np.zeros(0, np.int64)
    by_spike = np.argsort(spikes, kind='stable')
    return {'spikes': spikes[by_spike], 'rows': rows[by_spike],
            'per_unit': np.bincount(flat['cluster'][rows], minlength=n_units)}


def covered_mask(flat: dict, rows: np.ndarray, n_units: int, n_channels: int) -> np.ndarray:
    """(units, channels): the channels that every one of a unit's waveforms ``rows`` covers."""
    ch = flat['channels'][rows]
    unit = np.broadcast_to(flat['cluster'][rows][:, None], ch.shape)
    inside = ch >= 0
    hits = np.bincount(unit[inside] * n_channels + ch[inside], minlength=n_units * n_channels)
    per_unit = np.bincount(flat['cluster'][rows], minlength=n_units)
    return (hits.reshape(n_units, n_channels) == per_unit[:, None]) & (per_unit[:, None] > 0)
