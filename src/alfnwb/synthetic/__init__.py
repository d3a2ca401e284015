"""Realistic synthetic IBL sessions, written as a standard ONE local cache.

The cache holds ALF files at ``lab/Subjects/subject/date/number/...`` and the ``sessions.pqt``,
``datasets.pqt`` (md5 hashes, sizes, ``default_revision``) and ``insertions.pqt`` tables, so that a
plain ``ONE(cache_dir=DIR, mode='local')`` loads it and a local-mode ``OneAlyx`` resolves pids. For
insertions whose histology lives in Alyx (levels ``resolved``, ``aligned``, ``traced``), the Alyx
insertion and trajectory records are written to ONE's REST response cache (``DIR/.rest``), which a
local-mode ``OneAlyx`` answers from.

Sessions cycle through three templates, so that every loading path has data:

====== ======== ======= ========= =====================================================================
tmpl   probe    layout  histology spike sorting collections
====== ======== ======= ========= =====================================================================
0      probe00  NP1     alf       iblsorter (``#2024-05-06#`` default + an older unrevisioned run),
                                  pykilosort, Kilosort 2.5 (``alf/probe00``)
0      probe01  NP2.4   none      pykilosort
1      probe00  NP1     resolved  iblsorter ``#2024-05-06#``
1      probe01  NP1     traced    pykilosort
2      probe00  NP1     aligned   pykilosort
2      probe01  NP2.4   alf       iblsorter ``#2024-05-06#``
====== ======== ======= ========= =====================================================================

Ids (eid, pid, dataset ids, cluster uuids) are UUIDs derived from the seed, so a given seed always
gives the same cache. The ground truth of each probe is returned as :class:`SynthProbe`.

As in real IBL data, ``spikes.times`` is the probe's sample clock synchronised to the session's main
clock: ``times = samples / FS * (1 + drift) + offset``, with a drift of a few ppm and an offset of
tens of ms per probe (:attr:`SynthProbe.clock_drift`, :attr:`SynthProbe.clock_offset`), so
``times != samples / FS``.

With ``raw=True``, :func:`write_cache` also writes every probe's raw AP band, consistent with the
probe's default spike sorting (templates placed at ``spikes.samples``, scaled by ``spikes.amps``,
plus Gaussian noise of :data:`RAW_NOISE_UV`), as IBL lays it out:
``raw_ephys_data/probeXX/_spikeglx_ephysData_g0_t0.imecK.ap.{cbin,ch,meta}`` (``mtscomp``
compressed int16, 384 AP channels and 1 sync channel, a SpikeGLX ``.meta`` with the real
Neuropixels gains: :data:`RAW_FORMATS`).

The package, one module per concern (every public name below is importable from
``alfnwb.synthetic``):

============= ===================================================================================
module        contents
============= ===================================================================================
``cache``     :func:`write_cache`, the session templates (``TEMPLATES``), ``SUBJECTS``, ``REVISION``
``alf``       ALF objects: :func:`probe_geometry`, :func:`probe_channels`, :func:`spike_trains`,
              :func:`unit_templates`, :func:`probe_clock`, :func:`spike_sorting`,
              :func:`save_alf_object`; ``FS``, ``TIP_UM``, ``TRACKS``
``raw``       the raw AP band: :func:`write_raw`, :func:`raw_sample2volts`, :func:`raw_file_name`,
              ``RAW_FORMATS``, ``RAW_NOISE_UV``
``waveforms`` IBL's extracted waveforms (``waveforms.*``) by IBL's ``extract_wfs_cbin``:
              :func:`write_waveforms`, ``MAX_WAVEFORMS``, ``PREPROCESS_STEPS``
``rest``      Alyx records and ONE's REST cache: :func:`rest_records`, :func:`insertion_responses`,
              :func:`openapi_schema`, :func:`rest_query`, :func:`write_rest_cache`
``tables``    ONE's cache tables: :func:`session_row`, :func:`dataset_rows`, :func:`insertion_row`,
              :func:`file_md5`, :func:`write_tables`
``truth``     the ground truth returned: :class:`SynthCache`, :class:`SynthSession`,
              :class:`SynthProbe`, :class:`SynthSorting`
``ids``       :func:`stable_uuid`, :func:`stable_rng`: ids and random streams derived from the seed
============= ===================================================================================
"""

from __future__ import annotations

from .alf import (CLOCK_DRIFT_PPM, CLOCK_OFFSET_S, FS, TIP_UM, TRACKS, probe_channels, probe_clock, probe_geometry,
                  save_alf_object, spike_sorting, spike_trains, unit_placement, unit_templates)
from .cache import REVISION, SUBJECTS, TEMPLATES, write_cache
from .ids import stable_rng, stable_uuid
from .raw import RAW_CHUNK, RAW_FORMATS, RAW_NOISE_UV, raw_file_name, raw_sample2volts, write_raw
from .rest import (ALIGNMENT_KEY, TRAJECTORY_PROVENANCE, insertion_responses, openapi_schema, rest_query,
                   rest_records, write_rest_cache)
from .tables import dataset_rows, file_md5, insertion_row, session_row, write_tables
from .truth import SynthCache, SynthProbe, SynthSession, SynthSorting
from .waveforms import MAX_WAVEFORMS, PREPROCESS_STEPS, WAVEFORM_FILES, write_waveforms

__all__ = [
    # writing a cache, and its ground truth
    'write_cache', 'SynthCache', 'SynthSession', 'SynthProbe', 'SynthSorting',
    # constants
    'FS', 'TIP_UM', 'REVISION', 'SUBJECTS', 'TEMPLATES', 'TRACKS', 'CLOCK_DRIFT_PPM', 'CLOCK_OFFSET_S',
    'RAW_NOISE_UV', 'RAW_FORMATS', 'RAW_CHUNK', 'ALIGNMENT_KEY', 'TRAJECTORY_PROVENANCE',
    # building blocks: ids, ALF objects, raw band, REST records, cache tables
    'stable_uuid', 'stable_rng',
    'probe_geometry', 'probe_channels', 'spike_trains', 'unit_placement', 'unit_templates', 'probe_clock', 'spike_sorting',
    'save_alf_object',
    'raw_sample2volts', 'raw_file_name', 'write_raw',
    'write_waveforms', 'MAX_WAVEFORMS', 'PREPROCESS_STEPS', 'WAVEFORM_FILES',
    'rest_records', 'insertion_responses', 'openapi_schema', 'rest_query', 'write_rest_cache',
    'session_row', 'dataset_rows', 'insertion_row', 'file_md5', 'write_tables',
]
