"""Session and subject metadata: defaults where ONE cannot tell, and the user's metadata file.

The metadata file (YAML or JSON) may hold two sections, ``NWBFile`` and ``Subject``, whose keys are
listed in :data:`NWBFILE_KEYS` and :data:`SUBJECT_KEYS`. Unknown keys and ill-typed values are
errors: a typo must not silently drop a field. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import MetadataError

#: IBL labs and where they are: the session start time's timezone and the institution.
LABS = {lab: (site['timezone'], site['institution'])
        for lab, site in json.loads((Path(__file__).parent / 'data' / 'labs.json').read_text()).items()}

#: Keys of the ``NWBFile`` section and their types.
NWBFILE_KEYS = {
    'session_description': str, 'experiment_description': str, 'institution': str, 'lab': str,
    'experimenter': list, 'keywords': list, 'related_publications': list, 'protocol': str,
    'notes': str, 'session_start_time': str, 'timezone': str, 'surgery': str, 'virus': str,
    'stimulus_notes': str, 'data_collection': str, 'pharmacology': str,
}
#: Keys of the ``Subject`` section and their types.
SUBJECT_KEYS = {
    'species': str, 'sex': str, 'age': str, 'date_of_birth': str, 'genotype': str, 'strain': str,
    'description': str, 'weight': str,
}


def read_metadata(path: str | Path | None) -> dict:
    """Read and check a metadata file.

    Parameters
    ----------
    path : str or pathlib.Path or None
        A ``.yaml``/``.yml`` or ``.json`` file; None gives an empty dict.

    Returns
    -------
    dict
        ``{'NWBFile': {...}, 'Subject': {...}}`` with only known, well-typed keys.
    """
    if path is None:
        return {'NWBFile': {}, 'Subject': {}}
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as e:
        raise MetadataError(f'metadata file {path}: cannot read ({e.strerror})') from None
    try:
        if path.suffix.lower() == '.json':
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise MetadataError(f'metadata file {path}: not valid {"JSON" if path.suffix == ".json" else "YAML"} '
                            f'({str(e).splitlines()[0]})') from None
    data = data or {}
    if not isinstance(data, dict):
        raise MetadataError(f'metadata file {path}: expected a mapping with NWBFile and/or Subject sections')
    unknown = set(data) - {'NWBFile', 'Subject'}
    if unknown:
        raise MetadataError(f'metadata file {path}: unknown section(s) {sorted(unknown)}; expected NWBFile, Subject')
    out = {}
    for section, keys in (('NWBFile', NWBFILE_KEYS), ('Subject', SUBJECT_KEYS)):
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise MetadataError(f'metadata file {path}: section {section} must be a mapping')
        for k, v in values.items():
            if k not in keys:
                raise MetadataError(f'metadata file {path}: unknown key {section}.{k}; known: {", ".join(sorted(keys))}')
            if keys[k] is str and isinstance(v, (datetime.date, datetime.datetime)):
                values[k] = v = v.isoformat()  # YAML turns unquoted dates into dates
            if keys[k] is list and isinstance(v, str):
                values[k] = v = [v]
            if not isinstance(v, keys[k]) or (keys[k] is list and not all(isinstance(x, str) for x in v)):
                raise MetadataError(f'metadata file {path}: {section}.{k} must be '
                                    f'{"a list of strings" if keys[k] is list else "a string"}, got {type(v).__name__}')
        out[section] = dict(values)
    if 'timezone' in out['NWBFile']:
        _zone(out['NWBFile']['timezone'], path)
    if 'session_start_time' in out['NWBFile']:
        try:
            datetime.datetime.fromisoformat(out['NWBFile']['session_start_time'])
        except ValueError:
            raise MetadataError(f'metadata file {path}: NWBFile.session_start_time is not an ISO 8601 date-time') from None
    return out


def _zone(name: str, where) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:
        raise MetadataError(f'{where}: unknown timezone {name!r} (an IANA name such as Europe/London)') from None


def session_start_time(lab: str, date: datetime.date | None, start: datetime.datetime | None,
                       override: dict) -> tuple[datetime.datetime, str]:
    """Timezone-aware session start, and a note of where it came from.

    Order: the metadata file's ``session_start_time`` (+ ``timezone``); Alyx's start time; the session
    date at midnight. A naive time takes the metadata ``timezone``, else the lab's, else UTC.
    """
    zone_name = override.get('timezone') or LABS.get(lab, ('UTC', ''))[0]
    zone = _zone(zone_name, 'timezone')
    if override.get('session_start_time'):
        t, source = datetime.datetime.fromisoformat(override['session_start_time']), 'metadata file'
    elif start is not None:
        t, source = start, 'Alyx session record'
    elif date is not None:
        t, source = datetime.datetime.combine(date, datetime.time(0, 0)), 'session date (time of day unknown offline)'
    else:
        t, source = datetime.datetime(1970, 1, 1), 'unknown'
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone)
    return t, f'{source}, timezone {zone_name}'
