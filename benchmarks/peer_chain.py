"""The peer: the tool chain a user would assemble instead of alfnwb, on the same spikes.

1. a SpikeInterface sorting (``NumpySorting.from_samples_and_labels``) from ``spikes.samples`` and
   ``spikes.clusters``;
2. an NWBFile with the probe's electrodes (pynwb) and the units of
   ``neuroconv.tools.spikeinterface.add_sorting_to_nwbfile`` (with each unit's template channels);
3. an in-memory ``SortingAnalyzer`` without a recording, with the extensions of ``alfnwb export``'s
   default: what SpikeInterface can compute without a recording is computed by SpikeInterface
   (``random_spikes``, ``correlograms``, ``isi_histograms``, ``template_similarity``), the rest is
   set from the ALF files as alfnwb does (``templates`` from ``clusters.waveforms``,
   ``spike_amplitudes``, ``spike_locations``, ``unit_locations``, ``quality_metrics`` from
   ``clusters.metrics``);
4. ``ndx_spikesorting.add_sorting_analyzer_to_nwbfile``, written with pynwb's ``NWBHDF5IO``.

Run in a fresh process by ``export_full_probe.py``; prints the seconds of each phase as JSON on the
last line of stdout. Needs the ``benchmark`` extra (neuroconv)::

    python benchmarks/peer_chain.py ALF_DIR OUT.nwb
"""

import json
import sys
import time

T0 = time.perf_counter()
PHASES = {}


class phase:
    """Adds the seconds spent in a ``with`` block to ``PHASES[name]``."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t = time.perf_counter()

    def __exit__(self, *exc):
        PHASES[self.name] = PHASES.get(self.name, 0.0) + time.perf_counter() - self.t


with phase('import'):
    import warnings

    warnings.filterwarnings('ignore')
    import datetime
    import uuid

    import numpy as np
    import pandas as pd
    from ndx_spikesorting import add_sorting_analyzer_to_nwbfile
    from neuroconv.tools.spikeinterface import add_sorting_to_nwbfile
    from probeinterface import Probe, ProbeGroup
    from pynwb import NWBHDF5IO, NWBFile
    from spikeinterface.core import ChannelSparsity, NumpySorting, SortingAnalyzer
    from spikeinterface.core.sortinganalyzer import get_extension_class

FS = 30000.0


def inject(analyzer, name, params, data):
    """Set an extension's data as if SpikeInterface had computed it (what a user does with ALF values)."""
    ext = get_extension_class(name)(analyzer)
    ext.params = params
    ext.data.update(data)
    ext.run_info = {'run_completed': True, 'runtime_s': 0.0}
    analyzer.extensions[name] = ext


def main(alf: str, out: str) -> dict:
    with phase('load'):
        spikes = {k: np.load(f'{alf}/spikes.{k}.npy') for k in ('samples', 'clusters', 'amps', 'depths')}
        clusters = {k: np.load(f'{alf}/clusters.{k}.npy') for k in ('channels', 'depths', 'waveforms',
                                                                     'waveformsChannels')}
        metrics = pd.read_parquet(f'{alf}/clusters.metrics.pqt')
        xy = np.load(f'{alf}/channels.localCoordinates.npy')
    n_units, n_channels = clusters['channels'].size, xy.shape[0]
    unit_ids = np.arange(n_units)
    wfc = clusters['waveformsChannels'].astype(np.int64)

    with phase('sorting'):
        sorting = NumpySorting.from_samples_and_labels(spikes['samples'], spikes['clusters'].astype(np.int64), FS,
                                                       unit_ids=unit_ids)

    with phase('nwb_units'):
        nwbfile = NWBFile(session_description='IBL probe (benchmark peer)', identifier=str(uuid.uuid4()),
                          session_start_time=datetime.datetime(2024, 1, 8, tzinfo=datetime.timezone.utc))
        device = nwbfile.create_device(name='NeuropixelsProbe00', description='Neuropixels 1.0')
        group = nwbfile.create_electrode_group(name='probe00', description='probe00', location='unknown',
                                               device=device)
        for x, y in xy:
            nwbfile.add_electrode(group=group, location='unknown', rel_x=float(x), rel_y=float(y))
        add_sorting_to_nwbfile(sorting, nwbfile, unit_electrode_indices=[list(r) for r in wfc],
                               units_description='IBL clusters')

    with phase('analyzer_create'):
        probe = Probe(ndim=2, si_units='um')
        probe.set_contacts(positions=xy, shapes='square', shape_params={'width': 12.0})
        probe.set_device_channel_indices(np.arange(n_channels))
        probegroup = ProbeGroup()
        probegroup.add_probe(probe)
        channel_ids = np.arange(n_channels)
        rec_attributes = {'channel_ids': channel_ids, 'sampling_frequency': FS, 'num_channels': n_channels,
                          'num_samples': [int(spikes['samples'].max()) + 1], 'is_filtered': True,
                          'properties': {}, 'dtype': np.dtype('float32'), 'probegroup': probegroup}
        mask = np.zeros((n_units, n_channels), dtype=bool)
        mask[np.arange(n_units)[:, None], wfc] = True
        analyzer = SortingAnalyzer.create_memory(sorting, None, sparsity=ChannelSparsity(mask, unit_ids, channel_ids),
                                                 return_in_uV=True, peak_sign='neg', peak_mode='extremum',
                                                 rec_attributes=rec_attributes)
        # the spike vector is sorted by sample (stable): the per-spike ALF values in that order
        order = np.argsort(spikes['samples'], kind='stable')

    with phase('random_spikes'):
        analyzer.compute('random_spikes', method='uniform', max_spikes_per_unit=100, seed=0)
    with phase('templates'):
        wf = clusters['waveforms']
        dense = np.zeros((n_units, wf.shape[1], n_channels), dtype=np.float32)
        dense[np.arange(n_units)[:, None], :, wfc] = np.swapaxes(wf, 1, 2) * np.float32(1e6)  # V -> uV
        nbefore = 42
        inject(analyzer, 'templates', {'ms_before': (nbefore + 0.5) * 1e3 / FS,
                                       'ms_after': (wf.shape[1] - nbefore + 0.5) * 1e3 / FS,
                                       'operators': ['average']}, {'average': dense})
    with phase('spike_amplitudes'):
        inject(analyzer, 'spike_amplitudes', {}, {'amplitudes': (-spikes['amps'][order] * 1e6).astype(np.float32)})
    with phase('unit_locations'):
        unit_x = xy[clusters['channels'], 0]
        inject(analyzer, 'unit_locations', {'method': 'alf'},
               {'unit_locations': np.c_[unit_x, clusters['depths']]})
    with phase('spike_locations'):
        loc = np.zeros(order.size, dtype=[('x', 'float32'), ('y', 'float32')])
        loc['x'] = unit_x[spikes['clusters'][order]]
        loc['y'] = spikes['depths'][order]
        inject(analyzer, 'spike_locations', {'ms_before': 0.5, 'ms_after': 0.5, 'spike_retriever_kwargs': None,
                                             'method': 'alf', 'method_kwargs': {}, 'seed': None},
               {'spike_locations': loc})
    with phase('quality_metrics'):
        qm = metrics.drop(columns=['cluster_id']).set_index(pd.Index(unit_ids))
        inject(analyzer, 'quality_metrics', {'metric_names': list(qm.columns), 'metric_params': {},
                                             'metrics_to_compute': list(qm.columns),
                                             'delete_existing_metrics': False}, {'metrics': qm})
    with phase('correlograms'):
        analyzer.compute('correlograms', window_ms=50.0, bin_ms=1.0)
    with phase('isi_histograms'):
        analyzer.compute('isi_histograms', window_ms=50.0, bin_ms=1.0)
    with phase('template_similarity'):
        analyzer.compute('template_similarity', method='cosine')

    with phase('ndx_spikesorting'):
        add_sorting_analyzer_to_nwbfile(analyzer, nwbfile)
    with phase('write'):
        with NWBHDF5IO(out, 'w') as io:
            io.write(nwbfile)
    return {'extensions': sorted(analyzer.extensions), 'n_units': int(n_units)}


if __name__ == '__main__':
    info = main(sys.argv[1], sys.argv[2])
    print(json.dumps({'phases': {k: round(v, 3) for k, v in PHASES.items()}, **info}))
