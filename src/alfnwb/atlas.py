"""Allen atlas look-ups that need no annotation volume.

Brain regions come from ``iblatlas.regions.BrainRegions`` (offline); the bregma-to-CCF transform is
the affine one iblatlas's ``AllenAtlas.xyz2ccf`` applies, computed here without a volume.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import InvalidDataError

#: Allen CCF position of bregma, um, (ML, AP, DV), as iblatlas defines it.
def bregma_ccf_um() -> np.ndarray:
    from iblatlas.atlas import ALLEN_CCF_LANDMARKS_MLAPDV_UM

    return np.asarray(ALLEN_CCF_LANDMARKS_MLAPDV_UM['bregma'], dtype=float)


@lru_cache(maxsize=1)
def brain_regions():
    """The Allen structure tree (cached: building it takes ~0.2 s)."""
    from iblatlas.regions import BrainRegions

    return BrainRegions()


def mlapdv_to_ccf(mlapdv_um: np.ndarray) -> np.ndarray:
    """IBL coordinates (um from bregma; +x right, +y anterior, +z dorsal) to Allen CCF.

    Parameters
    ----------
    mlapdv_um : numpy.ndarray
        (n, 3) ML, AP, DV in um relative to bregma (``channels.mlapdv``).

    Returns
    -------
    numpy.ndarray
        (n, 3) Allen CCF um in NWB's order and axes: x = AP (+posterior), y = DV (+inferior),
        z = ML (+right), origin at the anterior-superior-left corner of the volume.
    """
    b = bregma_ccf_um()
    xyz = np.asarray(mlapdv_um, dtype=float)
    ml = b[0] + xyz[:, 0]
    ap = b[1] - xyz[:, 1]
    dv = b[2] - xyz[:, 2]
    return np.c_[ap, dv, ml]


def region_columns(atlas_ids: np.ndarray, context: str = '') -> dict[str, np.ndarray]:
    """Allen acronym and Beryl / Cosmos remaps of Allen atlas ids.

    Parameters
    ----------
    atlas_ids : numpy.ndarray
        Allen structure ids (``channels.brainLocationIds_ccf_2017``); negative (left hemisphere,
        lateralised) ids are accepted.
    context : str
        Prefix of the error message (the insertion and dataset).

    Returns
    -------
    dict
        ``atlas_id``, ``acronym``, ``beryl_acronym``, ``cosmos_acronym`` arrays.
    """
    regions = brain_regions()
    ids = np.asarray(atlas_ids).astype(np.int64)
    known = np.isin(np.abs(ids), regions.id)
    if not np.all(known):
        bad = np.unique(ids[~known])[:5]
        raise InvalidDataError(f'{context}atlas ids unknown to the Allen structure tree: {bad.tolist()}')
    acronym = regions.id2acronym(ids, mapping='Allen')
    beryl = regions.id2acronym(ids, mapping='Beryl')
    cosmos = regions.id2acronym(ids, mapping='Cosmos')
    return {'atlas_id': ids, 'acronym': np.asarray(acronym, dtype=object),
            'beryl_acronym': np.asarray(beryl, dtype=object), 'cosmos_acronym': np.asarray(cosmos, dtype=object)}
