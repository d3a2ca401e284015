"""DANDI conventions: safe names, the dandiset layout, validation and upload.

Names come from a database (subject nicknames, probe names) and are data: they are made DANDI-safe
exactly as ``dandi organize`` does, and a path built from them never leaves the dandiset folder.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import AlfNwbError, OutputError

__all__ = ['dandi_safe', 'nwb_relpath', 'ensure_dandiset_yaml', 'validate_nwb', 'upload', 'DANDISET_YAML']

DANDISET_YAML = 'dandiset.yaml'

# The characters ``dandi organize`` replaces with "-" (dandi.organize._sanitize_value), and the dot.
_UNSAFE = re.compile(r"[_*\\/<>:|\"'?%@;,\s]")

_TEMPLATE = """\
# Dandiset metadata, created by alfnwb. Fill it in on the DANDI web site (or here) before
# `dandi upload`: the identifier must be the one the archive gave your dandiset (DANDI:XXXXXX).
identifier: {identifier}
name: {name}
description: {description}
"""


def dandi_safe(value: str) -> str:
    """A value made safe for a DANDI file name, as ``dandi organize`` does it.

    Underscores, path separators, spaces and other special characters become ``-``, and so do dots:
    ``CSHL_020`` -> ``CSHL-020``, ``ibl_witten_13`` -> ``ibl-witten-13``, ``../x`` -> ``---x``.
    """
    value = _UNSAFE.sub('-', str(value)).replace('.', '-')
    if not value:
        raise AlfNwbError('an empty name cannot be part of a DANDI path')
    return value


def nwb_relpath(subject: str, eid: str, probe: str | None = None) -> Path:
    """``sub-<subject>/sub-<subject>_ses-<eid>[_probe-<probe>]_ecephys.nwb``, every part DANDI-safe."""
    sub = f'sub-{dandi_safe(subject)}'
    name = f'{sub}_ses-{dandi_safe(eid)}' + (f'_probe-{dandi_safe(probe)}' if probe else '') + '_ecephys.nwb'
    path = Path(sub) / name
    assert len(path.parts) == 2 and '..' not in path.parts  # by construction: no separator survives
    return path


def inside(root: Path, relpath: Path) -> Path:
    """``root / relpath``, refusing anything that would resolve outside ``root``."""
    root = Path(root).resolve()
    full = (root / relpath).resolve()
    if root != full and root not in full.parents:
        raise OutputError(f'{relpath}: resolves outside the dandiset folder {root}')
    return full


def ensure_dandiset_yaml(folder: str | Path, name: str = 'IBL spike sorting (alfnwb)',
                         description: str = 'Spike sorting of International Brain Laboratory recordings, '
                                            'exported with alfnwb.') -> Path:
    """Create ``dandiset.yaml`` in ``folder`` if it is missing (never overwrite the user's)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DANDISET_YAML
    if not path.exists():
        path.write_text(_TEMPLATE.format(identifier="'DANDI:000000'", name=repr(name),
                                         description=repr(description)))
    return path


def validate_nwb(path: str | Path) -> dict:
    """``dandi validate`` of one file inside a dandiset folder.

    Returns
    -------
    dict
        ``errors`` and ``warnings`` (counts: DANDI's ERROR and above, WARNING) and ``messages``
        (``SEVERITY id: message`` lines, errors first).
    """
    from dandi.validate import Severity

    errors, warnings, messages = 0, 0, []
    for severity, id_, message in _dandi_validation(path):
        sev = severity if severity is not None else Severity.ERROR
        if sev >= Severity.ERROR:
            errors += 1
        elif sev >= Severity.WARNING:
            warnings += 1
        else:
            continue
        messages.append((-int(sev), f'{sev.name} {id_}: {(message or "").strip()}'))
    return {'errors': errors, 'warnings': warnings, 'messages': [m for _, m in sorted(messages)]}


def _dandi_validation(path: str | Path) -> Iterator[tuple[Any, str, str | None]]:
    """(severity, id, message) of every result ``dandi validate PATH`` reports, through dandi's public API.

    What ``dandi validate`` (``dandi.validate._core.validate``, private) does for one path, built from
    the public ``dandi.files.find_dandi_files`` and ``DandiFile.get_validation_errors``: an error when
    no ``dandiset.yaml`` is above the path, an error for a broken symlink (dandi's default
    ``--missing-file-content=error``), otherwise each file's validation results, each result once.
    """
    from dandi.consts import dandiset_metadata_file
    from dandi.files import find_dandi_files
    from dandi.utils import find_parent_directory_containing
    from dandi.validate import Severity

    p = os.path.abspath(path)
    dandiset_path = find_parent_directory_containing(dandiset_metadata_file, p)
    if dandiset_path is None:
        yield Severity.ERROR, 'DANDI.NO_DANDISET_FOUND', 'Path is not inside a Dandiset'
    for df in find_dandi_files(p, dandiset_path=dandiset_path):
        filepath = df.filepath
        if filepath.is_symlink() and not filepath.exists():
            yield Severity.ERROR, 'DANDI.FILE_CONTENT_MISSING', (
                f'File content is not available (broken symlink: {filepath} -> {os.readlink(filepath)}). '
                f'Use --missing-file-content=skip or --missing-file-content=only-non-data to handle gracefully.')
            continue
        results = df.get_validation_errors()
        for r in {id(r): r for r in results}.values():  # dandi reports each result object once
            yield r.severity, r.id, r.message


def upload(folder: str | Path, instance: str = 'dandi', extra_args: list[str] | None = None) -> int:
    """Run ``dandi upload`` in a dandiset folder (needs ``DANDI_API_KEY`` and network access).

    Returns
    -------
    int
        The exit code of ``dandi upload``.
    """
    folder = Path(folder)
    if not (folder / DANDISET_YAML).exists():
        raise AlfNwbError(f'{folder}: no {DANDISET_YAML}; run alfnwb batch first, or dandi download the dandiset')
    cmd = ['dandi', 'upload', '--dandi-instance', instance, *(extra_args or [])]
    try:
        return subprocess.run(cmd, cwd=folder).returncode
    except FileNotFoundError:
        raise AlfNwbError('the dandi command is not installed (pip install dandi)') from None
