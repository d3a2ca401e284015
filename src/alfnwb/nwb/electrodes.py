"""Devices, electrode groups, the electrodes table and its anatomical localization tables.

Column names and descriptions come from :mod:`alfnwb.nwb.layout`.
"""

from __future__ import annotations

import numpy as np

from ..atlas import mlapdv_to_ccf, region_columns
from ..model import ProbeData
from . import layout

UNKNOWN = layout.UNKNOWN


def channel_table(probe: ProbeData) -> dict[str, np.ndarray]:
    """Per-channel columns of one probe (atlas look-ups included), in ``channels`` order."""
    ch = probe.channels
    prov = probe.provenance
    n = probe.n_channels
    if prov.histology != 'none' and 'atlas_id' in ch:
        regions = region_columns(ch['atlas_id'], context=f'insertion {prov.pid}: channels.brainLocationIds_ccf_2017: ')
        mlapdv = np.c_[ch['x'], ch['y'], ch['z']].astype(float) * 1e6  # m -> um, as channels.mlapdv
        ccf = mlapdv_to_ccf(mlapdv)
    else:
        regions = {'atlas_id': np.full(n, -1, dtype=np.int64), 'acronym': np.full(n, UNKNOWN, dtype=object),
                   'beryl_acronym': np.full(n, UNKNOWN, dtype=object),
                   'cosmos_acronym': np.full(n, UNKNOWN, dtype=object)}
        mlapdv = np.full((n, 3), np.nan)
        ccf = np.full((n, 3), np.nan)
    return {
        'location': regions['acronym'],
        'x': ccf[:, 0], 'y': ccf[:, 1], 'z': ccf[:, 2],
        'rel_x': np.asarray(ch['lateral_um'], dtype=float), 'rel_y': np.asarray(ch['axial_um'], dtype=float),
        'probe_name': np.full(n, prov.probe, dtype=object),
        'channel_index': np.arange(n, dtype=np.int64),
        'raw_channel_index': np.asarray(ch['rawInd']).astype(np.int64),
        'shank': np.asarray(ch['shank']).astype(np.int64),
        'atlas_id': regions['atlas_id'],
        'beryl_acronym': regions['beryl_acronym'], 'cosmos_acronym': regions['cosmos_acronym'],
        'ibl_ml': mlapdv[:, 0], 'ibl_ap': mlapdv[:, 1], 'ibl_dv': mlapdv[:, 2],
        'histology': np.full(n, prov.histology, dtype=object),
    }


def _device_model(nwbfile, model: str):
    """The file's DeviceModel of a Neuropixels probe model (one per model, shared by its probes)."""
    name = f'Neuropixels {model}' if model else 'Neuropixels'
    if name not in nwbfile.device_models:
        nwbfile.create_device_model(name=name, manufacturer='IMEC', model_number=model or 'unknown',
                                    description='Neuropixels probe model, as Alyx records it')
    return nwbfile.device_models[name]


def _groups(nwbfile, probe: ProbeData, cols: dict) -> np.ndarray:
    """Device and electrode group(s) of a probe; returns each channel's group."""
    prov = probe.provenance
    multi = np.unique(cols['shank']).size > 1
    device = nwbfile.create_device(
        name=prov.probe, model=_device_model(nwbfile, prov.model),
        description=f'Neuropixels probe {prov.model or ""} (insertion {prov.pid})'.replace('  ', ' '))
    groups = np.empty(cols['shank'].size, dtype=object)
    for s in np.unique(cols['shank']):
        sel = cols['shank'] == s
        regions = [r for r in dict.fromkeys(cols['cosmos_acronym'][sel]) if r not in (UNKNOWN, 'void', 'root')]
        name = f'{prov.probe}_shank{s}' if multi else prov.probe
        group = nwbfile.create_electrode_group(
            name=name, device=device,
            description=f'{prov.probe}' + (f' shank {s}' if multi else '') + f', insertion {prov.pid}',
            location=', '.join(regions) if regions else UNKNOWN)
        groups[sel] = group
    return groups


def add_electrodes(nwbfile, probes: list[ProbeData]) -> list[int]:
    """Add devices, groups and one electrodes row per channel of every probe, in bulk.

    Returns
    -------
    list of int
        The first electrodes row of each probe.
    """
    from hdmf.common import VectorData
    from pynwb.ecephys import ElectrodesTable

    tables = [channel_table(p) for p in probes]
    groups = [_groups(nwbfile, p, t) for p, t in zip(probes, tables)]
    offsets = list(np.cumsum([0] + [p.n_channels for p in probes])[:-1].astype(int))
    cat = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    group = np.concatenate(groups)
    cat['group'] = list(group)
    cat['group_name'] = np.array([g.name for g in group], dtype=object)
    columns = [VectorData(name=c.name, description=c.description,
                          data=list(cat[c.name]) if isinstance(cat[c.name], np.ndarray) and cat[c.name].dtype == object
                          else cat[c.name]) for c in layout.ELECTRODES]
    nwbfile.electrodes = ElectrodesTable(columns=columns)
    _add_localization(nwbfile, cat)
    return offsets


def _add_localization(nwbfile, cat: dict) -> None:
    """The channel positions in ndx-anatomical-localization: IBL bregma space and Allen CCFv3."""
    from hdmf.common import DynamicTableRegion, VectorData
    from ndx_anatomical_localization import AllenCCFv3Space, AnatomicalCoordinatesTable, Localization, Space

    rows = np.flatnonzero(cat['histology'] != 'none')
    if rows.size == 0:
        return
    localization = Localization()
    nwbfile.add_lab_meta_data([localization])
    ccf = AllenCCFv3Space()
    bregma = Space(name='IBLBregma', space_name='IBLBregma', origin='bregma', units='um', orientation='RAS')
    localization.add_spaces([ccf, bregma])
    method = {h: h for h in np.unique(cat['histology'][rows])}
    method_txt = ('IBL histology (' + ', '.join(sorted(method)) +
                  '): channels.mlapdv / Alyx trajectories, transformed to CCF with iblatlas bregma')
    for name, space, xyz, desc in (
            ('AllenCCFv3Coordinates', ccf, (cat['x'], cat['y'], cat['z']),
             'electrode positions in Allen CCFv3 (um; x +posterior, y +inferior, z +right)'),
            ('IBLBregmaCoordinates', bregma, (cat['ibl_ml'], cat['ibl_ap'], cat['ibl_dv']),
             'electrode positions in IBL coordinates (um from bregma; x +right ML, y +anterior AP, z +dorsal DV)')):
        cols = [VectorData(name=a, description=f'{a} coordinate (um)', data=np.asarray(v)[rows])
                for a, v in zip('xyz', xyz)]
        cols.append(DynamicTableRegion(name='localized_entity', description='row of the electrodes table',
                                       data=rows.astype(np.int64), table=nwbfile.electrodes))
        cols.append(VectorData(name='brain_region', description='Allen CCF acronym',
                               data=list(cat['location'][rows])))
        table = AnatomicalCoordinatesTable(name=name, description=desc, method=method_txt, space=space,
                                           columns=cols)
        localization.add_anatomical_coordinates_tables([table])
