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
from ..waveforms import flat_waveforms, on_channels
from . import layout
from .io import dataio

__all__ = ['add_ibl_waveforms', 'unit_waveform_columns']


def add_ibl_waveforms(nwbfile, probe: ProbeData, compression: str | None = 'gzip') -> None:
    """Store a probe's ``waveforms.*`` as published (no-op without them)."""
    from hdmf.common import DynamicTable, VectorData

    from .session import ecephys_module

    wf = probe.waveforms
    if wf is None:
        return
    name = probe.provenance.probe
    table = wf['table']
    traces = np.asarray(wf['traces'])
    # nullable integers (the per-cluster layout's NaN rows) as float with NaN; the dtype is kept in the description
    cols = [VectorData(name=str(c), description=f'waveforms.table column {c} (pandas dtype {table[c].dtype})',
                       data=table[c].to_numpy(dtype=float, na_value=np.nan) if table[c].isna().any()
                       else table[c].to_numpy(dtype=np.dtype(str(table[c].dtype).lower())))
            for c in table.columns]
    cols.append(VectorData(name='channels', description=layout.IBL_WAVEFORMS['channels'].description,
                           data=np.asarray(wf['channels'])))
    cols.append(VectorData(name='traces', description=layout.IBL_WAVEFORMS['traces'].description,
                           data=dataio(traces.reshape(-1, *traces.shape[-2:]), compression, chunk=256)))
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
    nan = np.full((n, n_samples, k), np.nan, dtype=np.float32)
    if probe.waveforms is None:
        return {'waveform_mean': nan, 'waveform_sd': nan.copy(), 'waveform_median': nan.copy()}
    flat = flat_waveforms(probe.waveforms, probe.channels['rawInd'])
    x = on_channels(flat, np.arange(flat['cluster'].size), electrodes[flat['cluster']])  # (N, k, samples) V
    units, first = np.unique(flat['cluster'], return_index=True)  # rows are sorted by cluster
    out = {key: nan.copy() for key in ('waveform_mean', 'waveform_sd', 'waveform_median')}
    if not units.size:
        return out
    count = np.add.reduceat(~np.isnan(x), first, axis=0, dtype=np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.add.reduceat(np.nan_to_num(x), first, axis=0, dtype=np.float64) / count
        owner = np.repeat(np.arange(units.size), np.diff(np.r_[first, x.shape[0]]))
        sd = np.sqrt(np.add.reduceat(np.nan_to_num((x - mean[owner]) ** 2), first, axis=0, dtype=np.float64) / count)
    medians = {'traces': np.asarray(probe.waveforms['templates'], dtype=np.float32), 'channels': flat['channels'][first]}
    median = on_channels(medians, np.arange(units.size), electrodes[units])
    for key, v in (('waveform_mean', mean), ('waveform_sd', sd), ('waveform_median', median)):
        out[key][units] = np.swapaxes(v, 1, 2) * 1e6
    return out
