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

__all__ = ['waveform_rows', 'flat_waveforms', 'read_traces', 'on_channels', 'blocks', 'select', 'covered_mask',
           'TROUGH_SAMPLE']

#: Sample of the spike in each IBL waveform (``extract_wfs_cbin``'s ``trough_offset``).
TROUGH_SAMPLE = 42


def waveform_rows(waveforms: dict) -> np.ndarray:
    """Which rows of IBL's waveform table hold a waveform (the per-cluster layout pads with NaN rows)."""
    return waveforms['table']['sample'].notna().to_numpy()


def flat_waveforms(waveforms: dict, raw_ind: np.ndarray) -> dict:
    """The real waveforms of either layout, sorted by cluster then sample; traces are not read here.

    Parameters
    ----------
    waveforms : dict
        :attr:`alfnwb.model.ProbeData.waveforms` (``traces`` memory-mapped, as IBL's loader opens them).
    raw_ind : numpy.ndarray
        ``channels.rawInd``: the raw channel of each ALF channel.

    Returns
    -------
    dict
        ``traces``: IBL's traces as (rows, channels, samples), still on disk; ``src``: the row of
        ``traces`` of each waveform; ``cluster``, ``sample`` (int64); ``channels`` (n, channels): the
        ALF channel of each trace row, -1 where the neighbourhood leaves the probe or the raw channel
        is not one of the ALF channels. Read traces with :func:`read_traces` or :func:`on_channels`.
    """
    valid = waveform_rows(waveforms)
    traces = waveforms['traces']
    traces = traces.reshape(-1, *traces.shape[-2:])  # a view: a memory map stays one
    table = waveforms['table']
    cluster = table['cluster'].to_numpy()[valid].astype(np.int64)
    sample = table['sample'].to_numpy()[valid].astype(np.int64)
    raw = np.asarray(waveforms['channels'])[valid].astype(np.int64)
    raw_ind = np.asarray(raw_ind).astype(np.int64)
    lut = np.full(max(int(raw.max(initial=0)), int(raw_ind.max(initial=0))) + 2, -1, dtype=np.int64)
    lut[raw_ind] = np.arange(raw_ind.size)
    order = np.lexsort((sample, cluster))
    return {'traces': traces, 'src': np.flatnonzero(valid)[order], 'cluster': cluster[order],
            'sample': sample[order], 'channels': lut[np.where(raw < 0, lut.size - 1, raw)][order]}


def read_traces(traces: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of IBL's traces as float32, read with plain file reads when they are memory-mapped.

    Reading a memory map keeps every page it touched resident (and counted in the process's
    memory) until the map is closed; a probe's ``waveforms.traces`` is gigabytes. Runs of
    consecutive rows are read with one ``readinto`` each, so memory is what is returned.

    >>> read_traces(np.arange(24, dtype=np.float32).reshape(4, 2, 3), np.array([3, 1]))[:, 0, 0]
    array([18.,  6.], dtype=float32)
    """
    rows = np.asarray(rows, dtype=np.int64)
    name = getattr(traces, 'filename', None)
    if name is None or not isinstance(traces, np.memmap) or not traces.flags.c_contiguous or rows.size == 0:
        return np.asarray(traces[rows], dtype=np.float32)
    order = np.argsort(rows, kind='stable')
    srt = rows[order]
    buf = np.empty((rows.size,) + traces.shape[1:], dtype=traces.dtype)
    row_bytes = buf[0].nbytes
    base = int(traces.offset) + (traces.ctypes.data - traces.base.ctypes.data if isinstance(
        traces.base, np.ndarray) else 0)
    cuts = np.flatnonzero(np.diff(srt) != 1) + 1
    with open(name, 'rb', buffering=0) as f:
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, srt.size]):  # one read per run of consecutive rows
            f.seek(base + int(srt[a]) * row_bytes)
            f.readinto(memoryview(buf[a:b]).cast('B'))
    out = np.empty(buf.shape, dtype=np.float32)
    out[order] = buf
    return out


def on_channels(flat: dict, rows: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Waveforms ``rows`` of :func:`flat_waveforms` on given ALF channels, NaN where not covered.

    Parameters
    ----------
    flat : dict
        From :func:`flat_waveforms` (or any dict with ``traces``, ``channels`` and optionally ``src``).
    rows : numpy.ndarray
        Rows to take (int).
    channels : numpy.ndarray
        (len(rows), k) ALF channel wanted at each position (-1: none).

    Returns
    -------
    numpy.ndarray
        (len(rows), k, samples) float32, V.
    """
    rows = np.asarray(rows, dtype=np.int64)
    ch = flat['channels'][rows]  # (n, nc)
    n_alf = max(int(ch.max(initial=-1)), int(channels.max(initial=-1))) + 2
    lut = np.full((rows.size, n_alf), -1, dtype=np.int32)  # ALF channel -> column of the trace
    r = np.broadcast_to(np.arange(rows.size)[:, None], ch.shape)
    inside = ch >= 0
    lut[r[inside], ch[inside]] = np.broadcast_to(np.arange(ch.shape[1]), ch.shape)[inside]
    col = lut[np.arange(rows.size)[:, None], np.where(channels < 0, n_alf - 1, channels)]  # (n, k)
    src = flat['src'][rows] if 'src' in flat else rows
    traces = read_traces(flat['traces'], src)
    out = traces[np.arange(rows.size)[:, None], np.maximum(col, 0)]  # (n, k, samples)
    out[col < 0] = np.nan
    return out


def blocks(cluster: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """Row ranges that never split a cluster (rows sorted by cluster), each starting a new ``max_rows`` window.

    A block holds the clusters whose first row falls in one window of ``max_rows`` rows, so it is
    at most ``max_rows`` plus one cluster long.

    >>> blocks(np.array([0, 0, 1, 1, 1, 2]), 3)
    [(0, 5), (5, 6)]
    """
    if cluster.size == 0:
        return []
    first = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]])
    starts = first[np.r_[True, np.diff(first // max_rows) > 0]]
    return [(int(a), int(b)) for a, b in zip(starts, np.r_[starts[1:], cluster.size])]


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
