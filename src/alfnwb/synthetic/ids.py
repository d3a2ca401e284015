"""Ids and random streams derived from their parts: a given seed always gives the same cache."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

NAMESPACE = uuid.UUID('6a0c1c74-4f0e-4d59-a9ae-3d33c6a3c2e5')


def stable_uuid(*parts: object) -> str:
    """A UUID derived from its parts only (eids, pids, dataset ids, cluster uuids).

    Parameters
    ----------
    *parts
        Anything with a ``str``: the id is a hash of the parts joined by ``/``.

    Returns
    -------
    str
        A version-4 UUID (the layout Alyx issues and ONE accepts), the same for the same parts.
    """
    digest = hashlib.sha256(NAMESPACE.bytes + '/'.join(map(str, parts)).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from its parts only.

    Parameters
    ----------
    *parts
        As for :func:`stable_uuid`.

    Returns
    -------
    numpy.random.Generator
        Draws from it leave every other random stream untouched (e.g. a probe's clock or raw noise
        do not shift the ALF data).
    """
    return np.random.default_rng(uuid.UUID(stable_uuid('rng', *parts)).int)
