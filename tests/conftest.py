"""Shared fixtures: an isolated HOME, a synthetic ONE cache, ONE objects of both kinds, exports."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# ONE writes to ~/.one and ~/Downloads: point HOME at a temporary folder before ONE is imported.
_HOME = tempfile.mkdtemp(prefix='alfnwb-home-')
os.environ['HOME'] = _HOME

#: Real fixtures copied into the repository (tests/data/README.md says where each comes from).
DATA = Path(__file__).resolve().parent / 'data'
BASE_URL = 'https://alyx.example.org'


@pytest.fixture(autouse=True)
def _fresh_one():
    """ONE() is memoised: never let one test's instance leak into the next."""
    from one.api import ONE

    ONE.cache_clear()
    yield
    ONE.cache_clear()


@pytest.fixture(scope='session')
def synth(tmp_path_factory):
    """Three sessions: every template (multi-sorter/revision, NP2.4, every histology level)."""
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('cache'), seed=7, sessions=3, n_units=24, duration=90.0)


@pytest.fixture(scope='session')
def raw_synth(tmp_path_factory):
    """One session, two probes (NP1 and NP2.4), 3 s of raw data consistent with the spikes, and IBL's
    extracted waveforms (waveforms.*) of each probe's default sorting."""
    from alfnwb.synthetic import write_cache

    return write_cache(tmp_path_factory.mktemp('rawcache'), seed=11, sessions=1, n_units=12, duration=3.0, raw=True)


@pytest.fixture
def one_plain(synth):
    """A plain one.api.One on the cache (no Alyx: pids resolve through insertions.pqt)."""
    from one.api import One

    return One(cache_dir=synth.cache_dir, mode='local')


@pytest.fixture
def one_alyx(synth):
    """A local-mode OneAlyx: pid2eid from insertions.pqt, alyx.rest from the REST cache."""
    from one.api import ONE

    return ONE(base_url=BASE_URL, cache_dir=synth.cache_dir, mode='local', silent=True)


#: (Allen acronym, DV boundary um from bregma): voxels above the boundary get the first region.
PAINT = ('VISp5', 'LP', -2500.0)


@pytest.fixture(scope='session')
def painted_atlas():
    """AllenAtlas(mock=True) whose label volume holds VISp5 above DV -2.5 mm and LP below."""
    from iblatlas.atlas import AllenAtlas

    ba = AllenAtlas(mock=True)
    regions = ba.regions
    upper, lower, dv = PAINT
    i_up = np.flatnonzero(regions.id == regions.acronym2id(upper)[0])[0]
    i_lo = np.flatnonzero(regions.id == regions.acronym2id(lower)[0])[0]
    z = ba.bc.zscale * 1e6  # DV of each voxel plane, um
    dv_axis = ba.xyz2dims[2]
    shape = [1, 1, 1]
    shape[dv_axis] = z.size
    above = (z >= dv).reshape(shape)
    ba.label[...] = np.where(above, i_up, i_lo).astype(ba.label.dtype)
    return ba


@pytest.fixture
def run_main(capsys):
    """Run an ``alfnwb`` command through ``main`` in this process: its exit code, stdout and stderr.

    The command's own code from the parsed arguments on, without an interpreter's start-up (~5 s of
    imports each). Tests of what only a real process shows (exit status, signals, a fresh
    matplotlib) start one instead.
    """
    from types import SimpleNamespace

    from alfnwb.cli import main

    def run(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run


@pytest.fixture(scope='session')
def session_export(synth, tmp_path_factory):
    """Session 0 (probe00 NP1 alf histology, default iblsorter; probe01 NP2.4 without histology)."""
    from one.api import One

    from alfnwb.export import export

    one = One(cache_dir=synth.cache_dir, mode='local')
    out = tmp_path_factory.mktemp('export') / 'session0.nwb'
    result = export(one, out, eid=synth.sessions[0].eid)
    return result
