"""What an alfnwb file holds, as data: paths, tables, columns, units, dtypes, descriptions, ALF sources.

The writers (:mod:`alfnwb.nwb.electrodes`, :mod:`alfnwb.nwb.units`, :mod:`alfnwb.nwb.session`), every
reader (:mod:`alfnwb.readback`, :mod:`alfnwb.reanalysis`, :mod:`alfnwb.plots`) and the tables of
``docs/nwb_layout.md`` (:mod:`alfnwb.docgen`) take the layout from here, so that it is written down
once.

>>> UNITS['spike_times'].alf
'spikes.times'
>>> [c.name for c in UNITS.ragged]
['spike_times', 'spike_amplitudes', 'spike_depths', 'spike_samples', 'electrodes']
>>> container_path('probe00')
'processing/ecephys/probe00'
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import SAMPLING_FREQUENCY

__all__ = ['Column', 'Table', 'ELECTRODES', 'UNITS', 'PROVENANCE', 'METRICS', 'MAPPINGS', 'UNKNOWN',
           'ELECTRODES_PATH', 'UNITS_PATH', 'ECEPHYS_PATH', 'PROVENANCE_PATH', 'PROVENANCE_TABLE', 'SESSION_PATHS',
           'LOCALIZATION_TABLES', 'container_path', 'UNITS_WITH_WAVEFORMS', 'IBL_WAVEFORMS', 'IBL_WAVEFORM_TEMPLATES',
           'ibl_waveforms_path', 'WAVEFORM_RATE', 'UNIT_INFO', 'PROVENANCE_FIELDS', 'metric_description', 'TRIALS',
           'TRIALS_PATH', 'TRIALS_INTERVALS', 'trials_column_description']

#: Location of channels without histology (``void`` is the Allen term for outside the brain).
UNKNOWN = 'unknown'
#: Sampling rate of ``waveform_mean`` and resolution of ``spike_times`` (Neuropixels AP band).
WAVEFORM_RATE = SAMPLING_FREQUENCY

ELECTRODES_PATH = 'general/extracellular_ephys/electrodes'
UNITS_PATH = 'units'
TRIALS_PATH = 'intervals/trials'
ECEPHYS_PATH = 'processing/ecephys'
PROVENANCE_TABLE = 'alfnwb_provenance'
PROVENANCE_PATH = f'{ECEPHYS_PATH}/{PROVENANCE_TABLE}'
#: Session fields read back by ``alfnwb info`` and the reanalysis tools.
SESSION_PATHS = {'eid': 'general/session_id', 'subject': 'general/subject/subject_id', 'lab': 'general/lab',
                 'session_start_time': 'session_start_time', 'task_protocol': 'general/protocol'}
#: ndx-anatomical-localization tables (``general/localization``) of the electrodes with histology.
LOCALIZATION_TABLES = {'AllenCCFv3Coordinates': 'AllenCCFv3', 'IBLBregmaCoordinates': 'IBLBregma'}
#: Brain-region parcellations and the column of :func:`alfnwb.read_units` that holds each.
MAPPINGS = {'Allen': 'acronym', 'Beryl': 'beryl_acronym', 'Cosmos': 'cosmos_acronym'}


def container_path(probe: str) -> str:
    """Path of a probe's ndx-spikesorting ``SpikeSortingContainer``."""
    return f'{ECEPHYS_PATH}/{probe}'


@dataclass(frozen=True)
class Column:
    """One column of a table in the file.

    ``description`` is written into the file as is; ``unit``, ``dtype`` and ``alf`` (the ALF dataset
    it comes from, ``object.attribute``) document it and let readers map it back to ALF.
    """

    name: str
    description: str
    unit: str = ''
    dtype: str = ''
    alf: str = ''
    ragged: bool = False  # a ``<name>_index`` column gives each row's range

    @property
    def alf_object(self) -> str:
        return self.alf.split('.', 1)[0] if self.alf else ''


class Table:
    """An ordered set of columns, looked up by name."""

    def __init__(self, path: str, description: str, columns: tuple[Column, ...]):
        self.path = path
        self.description = description
        self.columns = columns
        self._by_name = {c.name: c for c in columns}

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.columns)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def ragged(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.ragged)

    def select(self, *names: str) -> tuple[Column, ...]:
        return tuple(self._by_name[n] for n in names)


_NO_HISTOLOGY = 'NaN without histology'

ELECTRODES = Table(ELECTRODES_PATH, 'one row per channel of every exported probe, in channels order', (
    Column('location', 'Allen CCF acronym of the channel (unknown without histology)', dtype='text',
           alf='channels.brainLocationIds_ccf_2017'),
    Column('group', 'electrode group (probe, or probe shank)', dtype='reference'),
    Column('group_name', 'name of the electrode group', dtype='text'),
    Column('x', f'Allen CCF um, +posterior (AP); {_NO_HISTOLOGY}', 'um', 'float64', 'channels.mlapdv'),
    Column('y', f'Allen CCF um, +inferior (DV); {_NO_HISTOLOGY}', 'um', 'float64', 'channels.mlapdv'),
    Column('z', f'Allen CCF um, +right (ML); {_NO_HISTOLOGY}', 'um', 'float64', 'channels.mlapdv'),
    Column('rel_x', 'um on the probe, across (channels.localCoordinates[:, 0])', 'um', 'float64',
           'channels.localCoordinates'),
    Column('rel_y', 'um on the probe, from the first site upwards (channels.localCoordinates[:, 1])', 'um',
           'float64', 'channels.localCoordinates'),
    Column('probe_name', 'probe (device) name, as the ONE probe name', dtype='text'),
    Column('channel_index', 'index of the channel in the ALF channels arrays of its probe (0..n-1)',
           dtype='int64'),
    Column('raw_channel_index', 'channel index in the raw recording (channels.rawInd)', dtype='int64',
           alf='channels.rawInd'),
    Column('shank', 'shank of the probe (0 for single-shank probes)', dtype='int64'),
    Column('atlas_id', 'Allen CCF 2017 structure id (channels.brainLocationIds_ccf_2017); -1 without histology',
           dtype='int64', alf='channels.brainLocationIds_ccf_2017'),
    Column('beryl_acronym', 'brain region in the IBL Beryl parcellation', dtype='text'),
    Column('cosmos_acronym', 'brain region in the IBL Cosmos parcellation', dtype='text'),
    Column('ibl_ml', f'um from bregma, medio-lateral, +right (channels.mlapdv[:, 0]); {_NO_HISTOLOGY}', 'um',
           'float64', 'channels.mlapdv'),
    Column('ibl_ap', f'um from bregma, antero-posterior, +anterior (channels.mlapdv[:, 1]); {_NO_HISTOLOGY}',
           'um', 'float64', 'channels.mlapdv'),
    Column('ibl_dv', f'um from bregma, dorso-ventral, +dorsal (channels.mlapdv[:, 2]); {_NO_HISTOLOGY}', 'um',
           'float64', 'channels.mlapdv'),
    Column('histology', 'histology level the channel location comes from: alf, resolved, aligned, traced or none',
           dtype='text'),
))

_IN_ORDER = 'in the order of spike_times'

UNITS = Table(UNITS_PATH, 'spike sorted units (ALF clusters) of every probe; ids unique across probes', (
    Column('spike_times', 'spike times (s, session clock; spikes.times exactly)', 's', 'float64', 'spikes.times',
           ragged=True),
    Column('spike_amplitudes', f'amplitude of each spike, volts (spikes.amps), {_IN_ORDER}', 'V', 'ALF dtype',
           'spikes.amps', ragged=True),
    Column('spike_depths', f'depth of each spike along the probe, um (spikes.depths), {_IN_ORDER}', 'um',
           'ALF dtype', 'spikes.depths', ragged=True),
    Column('spike_samples', f'sample index of each spike on its probe\'s clock (spikes.samples), {_IN_ORDER}',
           'samples', 'ALF dtype', 'spikes.samples', ragged=True),
    Column('electrodes', 'electrodes of the unit\'s waveform, peak channel first', dtype='electrodes rows',
           alf='clusters.waveformsChannels', ragged=True),
    Column('probe_name', 'probe the unit was recorded on', dtype='text'),
    Column('pid', 'Alyx probe insertion id', dtype='text'),
    Column('cluster_id', 'cluster index in the ALF clusters arrays of its probe', dtype='int64'),
    Column('cluster_uuid', 'cluster uuid (clusters.uuids)', dtype='text', alf='clusters.uuids'),
    Column('peak_channel', 'electrodes table row of the peak channel (clusters.channels)', dtype='int64',
           alf='clusters.channels'),
    Column('depth', 'depth of the cluster along the probe, um (clusters.depths)', 'um', 'float64',
           'clusters.depths'),
    Column('location', 'Allen CCF acronym at the peak channel (unknown without histology)', dtype='text'),
    Column('beryl_acronym', 'Beryl region at the peak channel', dtype='text'),
    Column('cosmos_acronym', 'Cosmos region at the peak channel', dtype='text'),
    Column('waveform_mean', 'mean of the unit\'s IBL extracted waveforms (waveforms.traces) when the sorting has '
           'them (NaN on electrodes their neighbourhood misses, and for units of probes without them), else the '
           'cluster template (clusters.waveforms); uV, samples x electrodes in the order of the electrodes column',
           'uV', 'float32', 'waveforms.traces'),
    Column('waveform_sd', 'standard deviation of the unit\'s IBL extracted waveforms (waveforms.traces), uV, '
           'samples x electrodes (NaN as waveform_mean); only with waveforms.*', 'uV', 'float32',
           'waveforms.traces'),
    Column('waveform_median', 'IBL\'s median of the unit\'s extracted waveforms (waveforms.templates), uV, samples x '
           'electrodes (NaN as waveform_mean); only with waveforms.*', 'uV', 'float32', 'waveforms.templates'),
    Column('sorter_template', 'the spike sorter\'s template (clusters.waveforms), uV, samples x electrodes; written '
           'when waveform_mean holds the extracted waveforms\' mean', 'uV', 'float32', 'clusters.waveforms'),
))

#: IBL's extracted waveforms as published (``waveforms.*``), one table per probe, for the exact round trip.
IBL_WAVEFORMS = Table(f'{ECEPHYS_PATH}/<probe>_waveforms', 'IBL\'s extracted waveforms (waveforms.*) exactly as '
                      'published: one row per waveforms.table row', (
    Column('<table column>', 'each column of waveforms.table (cluster, sample, peak_channel, waveform_index, ...)',
           alf='waveforms.table'),
    Column('channels', 'raw channel of each trace row (waveforms.channels); the raw channel count pads '
           'neighbourhoods beyond the probe ends', dtype='int', alf='waveforms.channels'),
    Column('traces', 'the waveform (waveforms.traces), V, channels x samples, spike at sample 42', 'V', 'float32',
           'waveforms.traces'),
))
IBL_WAVEFORM_TEMPLATES = Table(f'{ECEPHYS_PATH}/<probe>_waveform_templates', 'IBL\'s median waveform of each '
                               'cluster of waveforms.table (waveforms.templates), exactly as published', (
    Column('templates', 'median of the cluster\'s waveforms, V, channels x samples', 'V', 'float32',
           'waveforms.templates'),
))


def ibl_waveforms_path(probe: str, what: str = 'waveforms') -> str:
    """Path of a probe's copy of IBL's ``waveforms`` table (``what='waveform_templates'``: the medians)."""
    return f'{ECEPHYS_PATH}/{probe}_{what}'
#: Units columns written only when a probe of the file has IBL's extracted waveforms (``waveforms.*``).
UNITS_WITH_WAVEFORMS = UNITS.select('waveform_sd', 'waveform_median', 'sorter_template')
#: Units columns written from the clusters object itself (the metrics follow them).
UNIT_INFO = UNITS.select('probe_name', 'pid', 'cluster_id', 'cluster_uuid', 'peak_channel', 'depth', 'location',
                         'beryl_acronym', 'cosmos_acronym')

#: IBL cluster metrics (clusters.metrics.pqt): one units column each, under its IBL name.
METRICS = Table(UNITS_PATH, 'IBL cluster metrics (clusters.metrics.pqt)', tuple(
    Column(name, desc, unit, alf=f'clusters.metrics.{name}') for name, desc, unit in (
        ('amp_max', 'maximum spike amplitude (V)', 'V'),
        ('amp_min', 'minimum spike amplitude (V)', 'V'),
        ('amp_median', 'median spike amplitude, geometric (V)', 'V'),
        ('amp_std_dB', 'standard deviation of the log spike amplitudes (dB)', 'dB'),
        ('contamination', 'contamination estimate from refractory period violations (fraction)', ''),
        ('contamination_alt', 'alternative contamination estimate (fraction)', ''),
        ('drift', 'cumulated absolute depth change per hour (um/h)', 'um/h'),
        ('missed_spikes_est', 'estimated fraction of spikes missed below the detection threshold', ''),
        ('noise_cutoff', 'noise cut-off metric of the amplitude distribution (lower is better)', ''),
        ('presence_ratio', 'fraction of 10 s bins with at least one spike', ''),
        ('presence_ratio_std', 'standard deviation of spike counts across 10 s bins', ''),
        ('slidingRP_viol', 'sliding refractory period test: 1 passes, 0 fails', ''),
        ('slidingRP_viol_forced', 'sliding refractory period test forced to a decision', ''),
        ('max_confidence', 'maximum confidence of the sliding refractory period test (%)', '%'),
        ('min_contamination', 'minimum contamination of the sliding refractory period test (%)', '%'),
        ('n_spikes_below2', 'number of spikes below 2 ms inter-spike interval', ''),
        ('spike_count', 'number of spikes', ''),
        ('firing_rate', 'mean firing rate (Hz)', 'Hz'),
        ('label', 'IBL quality score: fraction of passed criteria (1 = good unit)', ''),
        ('bitwise_fail', 'bitwise record of failed IBL criteria (0 = all passed)', ''),
        ('ks2_label', 'Kilosort label (good or mua)', ''),
        ('ks2_contamination_pct', 'Kilosort contamination (%)', '%'),
    )))


def metric_description(name: str) -> str:
    """Description of a metric column; metrics IBL adds later get a generic one."""
    return METRICS[name].description if name in METRICS else f'IBL cluster metric {name}'


PROVENANCE = Table(PROVENANCE_PATH, 'Where each probe came from (ONE / ALF), by alfnwb', (
    Column('pid', 'Alyx probe insertion id', dtype='text'),
    Column('eid', 'Alyx session id', dtype='text'),
    Column('probe_name', 'probe name (ALF collection alf/<probe>)', dtype='text'),
    Column('spike_sorter', 'spike sorter (iblsorter, pykilosort or kilosort2.5 for the old alf/probeXX layout)',
           dtype='text'),
    Column('collection', 'ALF collection the spike sorting was loaded from', dtype='text'),
    Column('revision', 'ALF dataset revision loaded (empty: unrevisioned)', dtype='text'),
    Column('histology', 'histology level of the channel locations: alf, resolved, aligned, traced or none',
           dtype='text'),
    Column('model', 'probe model from Alyx', dtype='text'),
    Column('alfnwb_version', 'alfnwb_version', dtype='text'),
    Column('ibllib_version', 'ibllib_version', dtype='text'),
    Column('one_version', 'one_version', dtype='text'),
    Column('waveforms', 'IBL\'s extracted waveforms (waveforms.*) used for the waveforms, templates and principal '
           'components: empty when the sorting has none', dtype='text'),
    Column('warnings', 'every degradation of this probe\'s export (data left out, a fallback taken), one per '
           'line; empty when none', dtype='text'),
    Column('trials_collection', 'ALF collection of the session\'s trials (intervals/trials); empty: no trials',
           dtype='text'),
    Column('trials_revision', 'ALF revision of the trials files loaded (empty: unrevisioned)', dtype='text'),
    Column('num_samples', 'samples of the probe\'s recording (raw file length, else last spike sample + 1; '
           '0: no SortingAnalyzer written)', 'samples', 'int64'),
))

#: Provenance record field (:class:`alfnwb.model.Provenance`) -> provenance table column.
PROVENANCE_FIELDS = {'probe': 'probe_name'}


#: NWB columns of ``trials.intervals`` and the ALF DataFrame columns (``AlfBunch.to_df``) they hold.
TRIALS_INTERVALS = {'start_time': 'intervals_0', 'stop_time': 'intervals_1'}
#: The trials columns: ``name | unit | description``; ``@`` stands for the clock, ``~`` for NaN events.
_TRIALS_COLUMNS = """
start_time | s | trial start (@; trials.intervals[:, 0])
stop_time | s | trial end (@; trials.intervals[:, 1])
stimOn_times | s | visual stimulus onset, photodiode (@)~
goCue_times | s | go cue tone onset (@)~
firstMovement_times | s | first wheel movement after the go cue (@)~
response_times | s | response registered: threshold reached or time out (@)
feedback_times | s | feedback: valve open or error tone (@)~
stimOff_times | s | visual stimulus offset (@)~
goCueTrigger_times | s | go cue command sent by the task (@)
stimOnTrigger_times | s | stimulus onset command sent by the task (@)
stimOffTrigger_times | s | stimulus offset command sent by the task (@)
stimFreeze_times | s | stimulus freeze at the response (@)
choice | | choice: -1 turn CCW (stimulus on the right when correct), +1 turn CW (left), 0 no-go
feedbackType | | feedback: +1 correct (reward), -1 error or no-go
contrastLeft | | contrast of the stimulus on the left (0-1); NaN when the stimulus is on the right
contrastRight | | contrast of the stimulus on the right (0-1); NaN when the stimulus is on the left
probabilityLeft | | probability of the stimulus being on the left in this trial's block (0.2, 0.5, 0.8)
rewardVolume | uL | water reward delivered (uL; 0 on error)
quiescencePeriod | s | wheel quiescence required before the stimulus (s)
"""


def _trials_column(line: str) -> Column:
    name, unit, desc = (part.strip() for part in line.split('|'))
    desc = desc.replace('@', 's, session clock (the clock of spike_times)').replace('~', '; NaN when not detected')
    return Column(name, desc, unit, 'ALF dtype', 'trials.intervals' if name in TRIALS_INTERVALS else f'trials.{name}')


#: IBL's trials object (``_ibl_trials.*``, as brainbox's ``SessionLoader.load_trials`` loads it): the NWB
#: ``trials`` table, one column per attribute under its IBL name; attributes not listed here are
#: written too, with a generic description (:func:`trials_column_description`).
TRIALS = Table(TRIALS_PATH, 'IBL trials (ALF _ibl_trials.*, loaded by brainbox SessionLoader.load_trials); '
               'times on the session clock, the clock of units/spike_times; NaN kept',
               tuple(_trials_column(line) for line in _TRIALS_COLUMNS.strip().splitlines()))


def trials_column_description(name: str) -> str:
    """Description of a trials column; attributes IBL adds later get a generic one."""
    return TRIALS[name].description if name in TRIALS else f'IBL trials attribute {name} (trials.{name})'
