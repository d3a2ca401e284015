"""alfnwb.plots: probe and region pictures from an exported file (size, determinism, atlas colours)."""

import h5py
import numpy as np
import pandas as pd
import pytest

from alfnwb import plots
from alfnwb.errors import AlfNwbError, NWBReadError

EL = 'general/extracellular_ephys/electrodes'


def _str(values):
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _pixels(path):
    """RGB pixels of a PNG as uint8, shape (height, width, 3)."""
    from matplotlib.image import imread

    img = imread(path)
    return np.round(img[..., :3] * 255).astype(np.uint8)


def _has_colour(pixels, rgb, min_count=50):
    return int(np.all(pixels == np.asarray(rgb, dtype=np.uint8), axis=-1).sum()) >= min_count


def _size(figsize):
    return (round(figsize[1] * plots.DPI), round(figsize[0] * plots.DPI))


@pytest.fixture(scope='module')
def nwb(session_export):
    return session_export.path


@pytest.fixture(scope='module')
def electrodes(nwb):
    with h5py.File(nwb, 'r') as f:
        el = f[EL]
        return pd.DataFrame({
            'probe': _str(el['probe_name'][:]), 'channel_index': el['channel_index'][:], 'rel_y': el['rel_y'][:],
            'shank': el['shank'][:], 'location': _str(el['location'][:]), 'atlas_id': el['atlas_id'][:],
        })


@pytest.fixture(scope='module')
def units_df(nwb):
    with h5py.File(nwb, 'r') as f:
        u = f['units']
        return pd.DataFrame({
            'acronym': _str(u['location'][:]), 'beryl_acronym': _str(u['beryl_acronym'][:]),
            'cosmos_acronym': _str(u['cosmos_acronym'][:]), 'label': u['label'][:],
        })


def _runs(df):
    """Runs of equal location along depth, per shank, straight from the electrodes table."""
    runs = []
    for shank, g in df.sort_values(['shank', 'rel_y', 'channel_index']).groupby('shank', sort=True):
        loc = g['location'].to_numpy()
        ids = g['atlas_id'].to_numpy()
        depth = g['rel_y'].to_numpy()
        cut = np.r_[0, np.flatnonzero(loc[1:] != loc[:-1]) + 1, loc.size]
        for i0, i1 in zip(cut[:-1], cut[1:]):
            runs.append((int(shank), loc[i0], int(ids[i0]), int(i1 - i0), depth[i0:i1]))
    return runs


def test_probe_regions_match_electrode_runs(nwb, electrodes):
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    el = electrodes[electrodes['probe'] == 'probe00']
    regions = plots.probe_regions(nwb, 'probe00')
    assert list(regions.columns[:7]) == ['shank', 'acronym', 'atlas_id', 'start_um', 'end_um', 'n_channels', 'rgb']
    runs = _runs(el)
    assert len(regions) == len(runs) > 3  # several real regions on probe00
    for row, (shank, acronym, atlas_id, n, depths) in zip(regions.itertuples(), runs):
        assert (row.shank, row.acronym, row.atlas_id, row.n_channels) == (shank, acronym, atlas_id, n)
        assert row.start_um <= depths.min() <= depths.max() <= row.end_um
        if acronym in ('unknown', 'void'):
            assert row.rgb == plots.GREY
        else:  # the Allen atlas colour of the channels' structure
            assert row.rgb == tuple(int(c) for c in br.rgb[np.flatnonzero(br.id == atlas_id)[0]])
    # the runs tile the probe: each starts where the previous one ends
    np.testing.assert_array_equal(regions['start_um'].to_numpy()[1:], regions['end_um'].to_numpy()[:-1])
    assert regions['n_channels'].sum() == len(el)
    assert {'LP', 'void'} <= set(regions['acronym'])


def test_probe_regions_without_histology(nwb, electrodes):
    el = electrodes[electrodes['probe'] == 'probe01']
    regions = plots.probe_regions(nwb, 'probe01')
    assert sorted(regions['shank']) == sorted(el['shank'].unique())  # one 'unknown' run per shank
    assert set(regions['acronym']) == {'unknown'} and set(regions['rgb']) == {plots.GREY}
    assert regions['n_channels'].sum() == len(el)


def test_plot_probe_png(nwb, tmp_path):
    out = plots.plot_probe(nwb, probe='probe00', output=tmp_path / 'a.png')
    assert out == tmp_path / 'a.png' and out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.png']  # nothing else written
    pixels = _pixels(out)
    assert pixels.shape[:2] == _size(plots.PROBE_FIGSIZE) == (1000, 800)
    # the strip is painted in atlas colours: every region with enough channels shows its own
    regions = plots.probe_regions(nwb, 'probe00')
    big = regions[(regions['end_um'] - regions['start_um']) >= 100]
    assert len(big) >= 3
    for rgb in big['rgb']:
        assert _has_colour(pixels, rgb), rgb
    # deterministic: the same call gives the same bytes
    again = plots.plot_probe(nwb, probe='probe00', output=str(tmp_path / 'b.png'))
    assert again.read_bytes() == out.read_bytes()


def test_plot_probe_firing_rate_and_no_histology(nwb, tmp_path):
    amp = plots.plot_probe(nwb, probe='probe00', output=tmp_path / 'amp.png')
    fr = plots.plot_probe(nwb, probe='probe00', output=tmp_path / 'fr.png', x='firing_rate')
    assert _pixels(fr).shape[:2] == _size(plots.PROBE_FIGSIZE)
    assert fr.read_bytes() != amp.read_bytes()
    none = plots.plot_probe(nwb, probe='probe01', output=tmp_path / 'p1.png')
    pixels = _pixels(none)
    assert pixels.shape[:2] == _size(plots.PROBE_FIGSIZE)
    assert _has_colour(pixels, plots.GREY)


def test_plot_probe_errors(nwb, tmp_path):
    with pytest.raises(NWBReadError, match='probe00.*probe01'):
        plots.plot_probe(nwb, output=tmp_path / 'x.png')
    with pytest.raises(NWBReadError, match='probe07'):
        plots.plot_probe(nwb, probe='probe07', output=tmp_path / 'x.png')
    with pytest.raises(AlfNwbError, match='x='):
        plots.plot_probe(nwb, probe='probe00', output=tmp_path / 'x.png', x='depth')
    assert not any(tmp_path.iterdir())


def test_plot_regions(units_df, tmp_path):
    out = plots.plot_regions(units_df, output=tmp_path / 'allen.png')
    assert out == tmp_path / 'allen.png'
    assert _pixels(out).shape[:2] == _size(plots.REGIONS_FIGSIZE) == (800, 800)
    assert plots.plot_regions(units_df, output=tmp_path / 'allen2.png').read_bytes() == out.read_bytes()
    for mapping in ('Beryl', 'Cosmos', 'cosmos'):
        p = plots.plot_regions(units_df, output=tmp_path / f'{mapping}.png', mapping=mapping, top=3)
        assert _pixels(p).shape[:2] == _size(plots.REGIONS_FIGSIZE)
        assert p.read_bytes() != out.read_bytes()
    with pytest.raises(AlfNwbError, match='mapping'):
        plots.plot_regions(units_df, output=tmp_path / 'bad.png', mapping='Swanson')
    assert not (tmp_path / 'bad.png').exists()


def test_plot_regions_colours(tmp_path):
    """Good units are drawn in the region's atlas colour; counts by region and quality."""
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    df = pd.DataFrame({'acronym': ['CA1'] * 5 + ['VPM'] * 3 + ['unknown'],
                       'label': [1, 1, 1, 0.5, np.nan, 1, 0.33, 0.66, 1]})
    df['beryl_acronym'] = df['acronym']
    df['cosmos_acronym'] = df['acronym']
    counts = plots._region_counts(df, 'acronym')
    expected = [['CA1', 5, 3], ['VPM', 3, 1], ['unknown', 1, 1]]
    assert counts[['region', 'n_units', 'n_good']].values.tolist() == expected
    pixels = _pixels(plots.plot_regions(df, output=tmp_path / 'r.png'))
    for acronym in ('CA1', 'VPM'):
        assert _has_colour(pixels, br.rgb[br.acronym2index(acronym)[1][0][0]])
    assert _has_colour(pixels, plots.GREY)
