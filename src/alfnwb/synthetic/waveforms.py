"""IBL's extracted waveforms (``waveforms.*``) of a synthetic probe, written by IBL's own code.

:func:`write_waveforms` runs ``ibldsp.waveform_extraction.extract_wfs_cbin`` on the probe's
synthetic raw AP band with the default sorting's spikes, as IBL's pipeline does: up to
:data:`MAX_WAVEFORMS` spikes per cluster, cut around ``spikes.samples`` on the 40-channel (NP1)
neighbourhood of the cluster's peak channel, from data that are phase-corrected, 300 Hz high-pass
filtered and common-average referenced. The files are IBL's format because IBL's code writes them.

The installed ibl-neuropixel writes the flat layout (``WaveformsLoader.data_version == 2``:
``waveforms.traces`` is (waveforms, channels, samples)); it has no writer of the older per-cluster
layout (version 1), so no synthetic probe has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ids import stable_rng
from .truth import SynthProbe, SynthSorting

#: Waveforms per cluster (IBL's ``max_wf``).
MAX_WAVEFORMS = 256
#: IBL's pre-processing of the extracted waveforms.
PREPROCESS_STEPS = ['phase_shift', 'butterworth', 'car']
#: Samples per extraction chunk: with IBL's 128-sample margin, 16384 (fast FFTs for the phase shift).
CHUNK_SAMPLES = 16384 - 128
#: The files ``extract_wfs_cbin`` writes, in the sorting's collection.
WAVEFORM_FILES = ('waveforms.channels.npz', 'waveforms.table.pqt', 'waveforms.templates.npy',
                  'waveforms.traces.npy')


def write_waveforms(probe: SynthProbe, sorting: SynthSorting, folder: Path) -> list[Path]:
    """Extract a probe's waveforms from its raw AP band with IBL's ``extract_wfs_cbin``.

    Parameters
    ----------
    probe : SynthProbe
        With its raw band written (:attr:`SynthProbe.raw_path`).
    sorting : SynthSorting
        The sorting the raw band follows (its spikes and peak channels).
    folder : pathlib.Path
        The sorting's folder (collection, revision folder included).

    Returns
    -------
    list of pathlib.Path
        The four ``waveforms.*`` files.
    """
    import tempfile
    import warnings

    from ibldsp.waveform_extraction import extract_wfs_cbin

    samples = np.asarray(sorting.spikes['samples'], dtype=np.int64)
    clusters = np.asarray(sorting.spikes['clusters'], dtype=np.int64)
    peak = np.asarray(sorting.clusters['channels'], dtype=np.int64)
    seed = int(stable_rng(probe.pid, 'waveforms').integers(2 ** 31))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='alfnwb-wfs-') as scratch, warnings.catch_warnings():
        # ibldsp's median of a cluster whose waveforms are all NaN on padded channels: expected
        warnings.filterwarnings('ignore', message='All-NaN slice', category=RuntimeWarning)
        extract_wfs_cbin(probe.raw_path, folder, samples, clusters, peak[clusters], max_wf=MAX_WAVEFORMS,
                         n_jobs=1, preprocess_steps=list(PREPROCESS_STEPS), seed=seed, scratch_dir=Path(scratch),
                         chunksize_samples=CHUNK_SAMPLES)
    return [folder / name for name in WAVEFORM_FILES]
