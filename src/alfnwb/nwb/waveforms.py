"""IBL's extracted waveforms (``waveforms.*``) in the file: exactly as published, and per unit.

:func:`add_ibl_waveforms` stores the four datasets of a probe as two tables in ``processing/ecephys``
(``<probe>_waveforms``: one row per ``waveforms.table`` row with its channels and traces;
``<probe>_waveform_templates``: IBL's medians), so that :func:`alfnwb.read_alf_object` gives back what
``SpikeSortingLoader.raw_waveforms()`` loaded. :func:`unit_waveform_columns` gives the units table's
``waveform_mean``, ``waveform_sd`` and ``waveform_median`` on each unit's electrodes.
"""

from __future__ import annotations

import numpy as np

from ..model import ProbeData
from ..waveforms import blocks, flat_waveforms, on_channels, read_traces
from . import layout
from .chunks import RowBlocks, dataio

__all__ = ['add_ibl_waveforms', 'unit_waveform_columns', 'BLOCK_ROWS']

#: Waveforms processed at once (~20 kB each): bounds the memory of the per-unit columns.
BLOCK_ROWS = 8192


def add_ibl_waveforms(nwbfile, probe: ProbeData, compression: str | None = 'gzip') -> None:
    """Store a probe's ``waveforms.*`` as published (no-op without them)."""
    from hdmf.common import DynamicTable, VectorData

    from .session import ecephys_module

    wf = probe.waveforms
    if wf is None:
        return
    name = probe.provenance.probe
    table = wf['table']
    traces = wf['traces']  # memory-mapped: written block by block, never read whole
    traces = traces.reshape(-1, *traces.shape[-2:])
    # nullable integers (the per-cluster layout's NaN rows) as float with NaN; the dtype is kept in the description
    cols = [VectorData(name=str(c), description=f'waveforms.table column {c} (pandas dtype {table[c].dtype})',
                       data=table[c].to_numpy(dtype=float, na_value=np.nan) if table[c].isna().any()
                       else table[c].to_numpy(dtype=np.dtype(str(table[c].dtype).lower())))
            for c in table.columns]
    cols.append(VectorData(name='channels', description=layout.IBL_WAVEFORMS['channels'].description,
                           data=np.asarray(wf['channels'])))
    rows = RowBlocks(traces.shape[0], traces.shape[1:], traces.dtype, block=BLOCK_ROWS,
                     read=lambda a, b: read_traces(traces, np.arange(a, b)).astype(traces.dtype, copy=False))
    cols.append(VectorData(name='traces', description=layout.IBL_WAVEFORMS['traces'].description,
                           data=rows.dataio(compression, chunk=256)))
    module = ecephys_module(nwbfile)
    module.add(DynamicTable(name=f'{name}_waveforms', description=layout.IBL_WAVEFORMS.description, columns=cols))
    module.add(DynamicTable(name=f'{name}_waveform_templates', description=layout.IBL_WAVEFORM_TEMPLATES.description,
                            columns=[VectorData(name='templates', description=layout.IBL_WAVEFORM_TEMPLATES[
                                'templates'].description, data=dataio(wf['templates'], compression, chunk=256))]))


def unit_waveform_columns(probe: ProbeData, electrodes: np.ndarray, n_samples: int) -> dict[str, np.ndarray]:
    """Mean, standard deviation and IBL median of each unit's extracted waveforms on its electrodes.

    Parameters
    ----------
    probe : ProbeData
    electrodes : numpy.ndarray
        (units, k) ALF channel of each unit's electrodes (peak first).
    n_samples : int
        Samples of a waveform, for probes without extracted waveforms (all NaN).

    Returns
    -------
    dict
        ``waveform_mean``, ``waveform_sd``, ``waveform_median``: (units, samples, k) float32 uV, NaN
        where a unit has no waveform or a waveform's neighbourhood misses the electrode.
    """
    n, k = electrodes.shape
    out = {key: np.full((n, n_samples, k), np.nan, dtype=np.float32)
           for key in ('waveform_mean', 'waveform_sd', 'waveform_median')}
    if probe.waveforms is None:
        return out
    flat = flat_waveforms(probe.waveforms, probe.channels['rawInd'])
    templates = np.asarray(probe.waveforms['templates'], dtype=np.float32)
    done = 0
    for a, b in blocks(flat['cluster'], BLOCK_ROWS):  # bounded memory: a block of clusters at a time
        cluster = flat['cluster'][a:b]
        x = on_channels(flat, np.arange(a, b), electrodes[cluster])  # (rows, k, samples) V
        units, first = np.unique(cluster, return_index=True)  # rows are sorted by cluster
        count = np.add.reduceat(~np.isnan(x), first, axis=0, dtype=np.float64)
        owner = np.repeat(np.arange(units.size), np.diff(np.r_[first, x.shape[0]]))
        with np.errstate(invalid='ignore', divide='ignore'):
            mean = np.add.reduceat(np.nan_to_num(x), first, axis=0, dtype=np.float64) / count
            x -= mean[owner]
            np.square(x, out=x)
            sd = np.sqrt(np.add.reduceat(np.nan_to_num(x, copy=False), first, axis=0, dtype=np.float64) / count)
        # IBL's medians are one per cluster with waveforms, in cluster order, on the first waveform's channels
        medians = {'traces': templates[done:done + units.size], 'channels': flat['channels'][a + first]}
        median = on_channels(medians, np.arange(units.size), electrodes[units])
        done += units.size
        for key, v in (('waveform_mean', mean), ('waveform_sd', sd), ('waveform_median', median)):
            out[key][units] = np.swapaxes(v, 1, 2) * 1e6
    return out
