"""Export one insertion (pid) or one session (eid) to one NWB file: load, build, write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .loading import SessionData, load_session
from .metadata import read_metadata
from .nwb.io import check_output, write_nwbfile


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path
    session: SessionData
    n_units: int
    n_electrodes: int
    probes: list = field(default_factory=list)  # Provenance of each probe


def build_nwbfile(session: SessionData, metadata: dict | None = None, compression: str | None = 'gzip'):
    """Build the in-memory NWBFile of a loaded session (no I/O).

    Parameters
    ----------
    session : SessionData
        From :func:`alfnwb.loading.load_session`.
    metadata : dict, optional
        From :func:`alfnwb.metadata.read_metadata`.
    compression : str or None
        HDF5 filter of the per-spike datasets.

    Returns
    -------
    pynwb.NWBFile
    """
    from .nwb.electrodes import add_electrodes
    from .nwb.session import add_provenance, make_nwbfile
    from .nwb.units import add_units

    nwbfile = make_nwbfile(session, metadata)
    offsets = add_electrodes(nwbfile, session.probes)
    add_units(nwbfile, session.probes, offsets, compression=compression)
    add_provenance(nwbfile, session)
    return nwbfile


def export(one, output: str | Path, *, pid: str | None = None, eid: str | None = None, probe: str | None = None,
           spike_sorter: str | None = None, revision: str | None = None, min_histology: str = 'none',
           atlas=None, metadata: str | Path | dict | None = None, overwrite: bool = False,
           compression: str | None = 'gzip') -> ExportResult:
    """Export an insertion or a session to one NWB file.

    Parameters
    ----------
    one : one.api.One
        Any ONE instance (remote, or local on a cache).
    output : str or pathlib.Path
        The ``.nwb`` file to write. Nothing is left there if the export fails.
    pid : str, optional
        A probe insertion: the file holds that probe.
    eid : str, optional
        A session: the file holds all its probes, or only ``probe``.
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

    Returns
    -------
    ExportResult
    """
    output = check_output(output, overwrite)  # fail before minutes of loading
    meta = metadata if isinstance(metadata, dict) else read_metadata(metadata)
    session = load_session(one, eid=eid, pid=pid, probe=probe, spike_sorter=spike_sorter, revision=revision,
                           min_histology=min_histology, atlas=atlas)
    nwbfile = build_nwbfile(session, meta, compression=compression)
    path = write_nwbfile(nwbfile, output, overwrite=overwrite)
    return ExportResult(path=path, session=session, n_units=sum(p.n_clusters for p in session.probes),
                        n_electrodes=sum(p.n_channels for p in session.probes),
                        probes=[p.provenance for p in session.probes])
