"""Export one insertion (pid) or one session (eid) to one NWB file: load, build, write."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .collector import collected_after
from .errors import OutputError, WarningLog, recorded_warnings
from .loading import load_session, load_trials
from .model import SessionData
from .metadata import read_metadata
from .nwb.io import check_output, output_lock, write_nwbfile


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path
    # as exported: spikes.samples / clusters held narrower when they fit (ProbeData.alf_dtype), a large
    # probe's times, amps and depths as DiskColumns (numpy.asarray reads one)
    session: SessionData
    n_units: int
    n_electrodes: int
    probes: list = field(default_factory=list)  # Provenance of each probe
    extensions: tuple = ()  # SortingAnalyzer extensions written per probe


def build_nwbfile(session: SessionData, metadata: dict | None = None, compression: str | None = 'gzip',
                  analyzers: list | None = None, warnings_log: WarningLog | None = None):
    """Build the in-memory NWBFile of a loaded session (no I/O).

    Parameters
    ----------
    session : SessionData
        From :func:`alfnwb.loading.load_session`.
    metadata : dict, optional
        From :func:`alfnwb.metadata.read_metadata`.
    compression : str or None
        HDF5 filter of the per-spike datasets.
    analyzers : list, optional
        One SortingAnalyzer per probe (from :func:`alfnwb.analyzer.build_analyzer`), or None entries:
        each becomes a SpikeSortingContainer named after its probe.
    warnings_log : alfnwb.errors.WarningLog, optional
        The degradations of this export so far: each probe's go into its provenance ``warnings``.

    Returns
    -------
    pynwb.NWBFile
    """
    from .nwb.electrodes import add_electrodes
    from .nwb.session import add_provenance, add_trials, make_nwbfile
    from .nwb.units import add_units
    from .nwb.waveforms import add_ibl_waveforms

    nwbfile = make_nwbfile(session, metadata)
    offsets = add_electrodes(nwbfile, session.probes)
    add_units(nwbfile, session.probes, offsets, compression=compression)
    for probe, analyzer in zip(session.probes, analyzers or [None] * len(session.probes)):
        if analyzer is not None and analyzer.has_extension('waveforms') and probe.provenance.waveforms.startswith(
                'waveforms.*'):  # IBL's waveforms.* as published, with the waveforms extension made of them
            add_ibl_waveforms(nwbfile, probe, compression=compression)
    if session.trials is not None:
        add_trials(nwbfile, session.trials)
    num_samples = [0] * len(session.probes)
    if analyzers:
        from .nwb.analyzer import add_spike_sorting

        unit_offset = 0
        for i, (probe, analyzer, offset) in enumerate(zip(session.probes, analyzers, offsets)):
            if analyzer is not None:
                add_spike_sorting(nwbfile, analyzer, probe.provenance.probe, offset, unit_offset,
                                  compression=compression)
                num_samples[i] = int(analyzer.get_total_samples())
            unit_offset += probe.n_clusters
    if warnings_log is not None:  # the last step of the build: every degradation is known by now
        for probe in session.probes:
            prov = probe.provenance
            prov.warnings = '\n'.join(dict.fromkeys(warnings_log.messages(prov.pid) + warnings_log.messages(prov.eid)))
    add_provenance(nwbfile, session, num_samples=num_samples)
    return nwbfile


def build_analyzers(one, session: SessionData, extensions=None, raw: bool = False,
                    extension_params: dict | None = None, n_jobs: int = 1,
                    progress: Callable[[str], None] | None = None) -> list:
    """One analyzer per probe of a loaded session (None for every probe if no extension is asked).

    Each is what the writer needs: a :class:`~alfnwb.extensions.StreamedAnalyzer` (spike- and
    pair-sized extensions made while the file is written), or SpikeInterface's ``SortingAnalyzer``
    with raw data or IBL's waveforms (:func:`alfnwb.analyzer.build_analyzer`, ``stream=True``).

    Parameters
    ----------
    one : one.api.One
        Finds the raw data when ``raw``.
    session : SessionData
    extensions, extension_params
        See :func:`alfnwb.analyzer.resolve_extensions` and :func:`alfnwb.analyzer.build_analyzer`.
    raw : bool
        Compute the raw-data extensions from ``raw_ephys_data/<probe>/*.ap.cbin``.
    n_jobs : int
        Processes for the raw-data extensions.
    progress : callable, optional
        Told as each probe's extensions start.

    Returns
    -------
    list
        ``StreamedAnalyzer``, ``SortingAnalyzer`` or None, one per probe.
    """
    from .analyzer import build_analyzer, open_raw_recording, resolve_extensions
    from .loading import raw_ap_file

    if not resolve_extensions(extensions, raw=raw, waveforms=True):
        return [None] * len(session.probes)
    out = []
    for probe in session.probes:  # each probe resolves the names: IBL's waveforms.* may differ between them
        recording = open_raw_recording(raw_ap_file(one, probe), probe) if raw else None
        out.append(build_analyzer(probe, extensions, recording=recording, extension_params=extension_params,
                                  n_jobs=n_jobs, progress=progress, stream=True))
    return out


def export(one, output: str | Path, *, pid: str | None = None, eid: str | None = None, probe: str | None = None,
           spike_sorter: str | None = None, revision: str | None = None, min_histology: str = 'none',
           atlas=None, metadata: str | Path | dict | None = None, overwrite: bool = False,
           compression: str | None = 'gzip', extensions=None, raw: bool = False, extension_params: dict | None = None,
           n_jobs: int | None = None, tmp_dir: str | Path | None = None, strict: bool = False,
           progress: Callable[[str], None] | None = None, trials: bool = True) -> ExportResult:
    """Export an insertion or a session to one NWB file.

    Parameters
    ----------
    one : one.api.One
        Any ONE instance (remote, or local on a cache).
    output : str or pathlib.Path
        The ``.nwb`` file to write. Nothing is left there if the export fails.
    pid, eid : str, optional
        A probe insertion (the file holds that probe) or a session (all its probes, or only ``probe``).
    probe : str, optional
        With ``eid``, the one probe to export.
    spike_sorter, revision, min_histology, atlas
        See :func:`alfnwb.loading.load_probe`.
    metadata : str or pathlib.Path or dict, optional
        A YAML/JSON metadata file (or its parsed content) overriding session and subject defaults.
    overwrite : bool
        Replace an existing output file.
    compression : str or None
        HDF5 filter of the per-spike datasets ('gzip' default, 'lzf', None).
    extensions : str or list of str, optional
        Analyzer extensions per probe: ``'default'`` (None), ``'all'``, ``'none'`` or names (:mod:`alfnwb.analyzer`).
    raw : bool
        Also compute ``waveforms``, ``noise_levels`` and ``principal_components`` from the local AP band.
    extension_params : dict, optional
        SpikeInterface parameters per extension, e.g. ``{'correlograms': {'window_ms': 100}}``.
    n_jobs : int, optional
        Compression threads (default: the cores available) and raw-data extension processes (default: 1).
    tmp_dir : str or pathlib.Path, optional
        Folder of the file before its rename (same file system as ``output``) and of a large probe's
        spike columns (:func:`hold_on_disk`); default: the output's folder.
    strict : bool
        Fail on any degradation (:class:`~alfnwb.errors.AlfNwbWarning`) instead of warning and recording it.
    progress : callable, optional
        Called with a short message as each stage starts (the command line prints them).
    trials : bool
        Include the session's trials (:func:`alfnwb.loading.load_trials`; ``--no-trials``: False).

    Returns
    -------
    ExportResult
    """
    output, meta = _check_arguments(output, overwrite, metadata, extensions, raw)
    say = progress or (lambda message: None)
    with collected_after(), output_lock(output, tmp_dir), recorded_warnings(strict) as log:
        say(f'loading {"insertion " + str(pid) if pid else "session " + str(eid)}')
        session = _load(one, trials, tmp_dir or output.parent, eid=eid, pid=pid, probe=probe,
                        spike_sorter=spike_sorter, revision=revision, min_histology=min_histology, atlas=atlas)
        analyzers = build_analyzers(one, session, extensions, raw=raw, extension_params=extension_params,
                                    n_jobs=n_jobs or 1, progress=say)
        path = _build_and_write(session, analyzers, meta, compression, log, output, overwrite, tmp_dir, say, n_jobs)
        result = _result(path, session, analyzers)
        del analyzers  # their producers are reference cycles: freed by the collection as the block ends
    return result


def preload() -> None:
    """Import the libraries every export needs (brainbox, pynwb and the NWB extensions: seconds).

    An export imports them as it goes; a local batch worker imports them once, as it starts, while
    the other workers start too.
    """
    import brainbox.io.one  # noqa: F401
    import ndx_anatomical_localization  # noqa: F401
    import ndx_spikesorting  # noqa: F401
    import pynwb  # noqa: F401

    from . import extensions  # noqa: F401
    from .nwb import analyzer, electrodes, session, units  # noqa: F401


#: A probe's ``spikes.times``, ``amps`` and ``depths`` are held on disk through the build and the write
#: when they are at least this large together (20 bytes a spike: from 6.7 M spikes).
ON_DISK_MIN_BYTES = 128 << 20
#: The spike columns the writers read grouped by unit only (:meth:`alfnwb.model.ProbeData.hold_on_disk`).
ON_DISK = ('times', 'amps', 'depths')


def _load(one, trials: bool, folder: Path, **kwargs) -> SessionData:
    """The session's probes (:func:`alfnwb.loading.load_session`), and its trials if asked.

    The export holds each probe's spikes until its write: samples and clusters in fewer bytes when
    they fit (:meth:`alfnwb.model.ProbeData.narrow_spikes`; the file keeps the ALF dtypes), and a
    large probe's :data:`ON_DISK` columns in anonymous files in ``folder`` (:func:`hold_on_disk`).
    """
    session = load_session(one, **kwargs)
    for probe in session.probes:
        probe.narrow_spikes()
    hold_on_disk(session, folder)
    return load_trials(one, session) if trials else session


def hold_on_disk(session: SessionData, folder: str | Path, min_bytes: int | None = None) -> list[str]:
    """Hold the :data:`ON_DISK` columns of each probe that has ``min_bytes`` of them in files in ``folder``.

    An export holds them from its load to the end of its write only to write them grouped by unit
    (the units table, the analyzer's amplitudes and locations): in files, in that order, they are
    read block by block as they are compressed (:class:`alfnwb.model.DiskColumn`; 0.35 GB less
    memory at 17.5 M spikes). The files are anonymous, in the folder of the output's temporary file:
    they go with the session, and nothing is left behind, even by a killed process.

    Parameters
    ----------
    session : SessionData
    folder : str or pathlib.Path
    min_bytes : int, optional
        Default :data:`ON_DISK_MIN_BYTES`; 0 holds every probe's columns on disk.

    Returns
    -------
    list of str
        The pids of the probes held on disk.

    Raises
    ------
    alfnwb.errors.OutputError
        A column could not be written (e.g. a full disk): its file is gone, the column still in memory.
    """
    least = ON_DISK_MIN_BYTES if min_bytes is None else min_bytes
    held = []
    for probe in session.probes:
        if sum(getattr(probe.spikes.get(k), 'nbytes', 0) for k in ON_DISK) < least:
            continue
        for key in ON_DISK:
            try:
                probe.hold_on_disk(key, folder)
            except OSError as e:
                raise OutputError(f'insertion {probe.provenance.pid}: cannot hold spikes.{key} on disk in {folder} '
                                  f'({e.strerror or e})') from None
        held.append(probe.provenance.pid)
    return held


def _check_arguments(output, overwrite: bool, metadata, extensions, raw: bool) -> tuple[Path, dict]:
    """Fail before minutes of loading: the output path, the metadata file, the extension names."""
    from .analyzer import resolve_extensions
    from .nwb.io import no_tqdm_monitor

    no_tqdm_monitor()  # the progress bars of ONE and brainbox as they load would keep the writer from forking
    output = check_output(output, overwrite)
    meta = metadata if isinstance(metadata, dict) else read_metadata(metadata)
    resolve_extensions(extensions, raw=raw, waveforms=True)  # names only: each probe checks what it has
    return output, meta


def _build_and_write(session: SessionData, analyzers: list, meta: dict, compression: str | None, log: WarningLog,
                     output: Path, overwrite: bool, tmp_dir, say: Callable[[str], None], jobs: int | None) -> Path:
    """Build the NWBFile in memory, then write, validate and move it into place."""
    from .extensions import StreamedAnalyzer

    say(f'building the NWB file ({sum(p.n_clusters for p in session.probes)} units)')
    nwbfile = build_nwbfile(session, meta, compression=compression, analyzers=analyzers, warnings_log=log)
    for analyzer in analyzers:  # the NWBFile holds their arrays now; the producers stay for the write
        if isinstance(analyzer, StreamedAnalyzer):
            analyzer.release_arrays()
    say(f'writing {output}')
    return write_nwbfile(nwbfile, output, overwrite=overwrite, tmp_dir=tmp_dir, progress=say, jobs=jobs)


def _result(path: Path, session: SessionData, analyzers: list) -> ExportResult:
    """What :func:`export` wrote: the file, the session, its unit and electrode counts, per-probe
    provenance, the extensions of its (first probe's) analyzer."""
    extensions = tuple(analyzers[0].extensions) if analyzers and analyzers[0] is not None else ()
    return ExportResult(path=path, session=session, n_units=sum(p.n_clusters for p in session.probes),
                        n_electrodes=sum(p.n_channels for p in session.probes),
                        probes=[p.provenance for p in session.probes], extensions=extensions)


class _CallableModule(types.ModuleType):
    """``alfnwb.export(one, ...)`` must call :func:`export` however the package was imported.

    Importing this module (``from alfnwb.export import export``, or any import of it) makes Python
    set the package attribute ``alfnwb.export`` to the module, shadowing the lazily imported
    function of the same name; calling the module calls the function.
    """

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
