"""Pictures of exported files: a probe along depth by brain region, and units per region.

Figures are drawn with matplotlib's Agg renderer on a :class:`matplotlib.figure.Figure` (no pyplot,
no global backend switch) and written as PNG with a fixed size and dpi and no software/date
metadata, so that the same input gives a byte-identical file. matplotlib is imported inside the
functions: importing :mod:`alfnwb` stays fast.

Colours are the Allen atlas colours of :class:`iblatlas.regions.BrainRegions` (offline);
``unknown`` (no histology), ``void`` (outside the brain) and acronyms the atlas does not know are
drawn in light grey.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AlfNwbError, NWBReadError, OutputError
from .nwb import layout
from .nwb.reader import open_export

__all__ = ['plot_probe', 'plot_regions', 'plot_psth', 'probe_regions', 'MAPPINGS', 'PROBE_FIGSIZE', 'REGIONS_FIGSIZE', 'DPI']

#: Brain region mappings and the units column each one reads.
MAPPINGS = layout.MAPPINGS
#: Figure sizes (inches) and resolution: a PNG is figsize * DPI pixels, always.
PROBE_FIGSIZE = (8.0, 10.0)
REGIONS_FIGSIZE = (8.0, 8.0)
#: Size (inches) of one region's panel of :func:`plot_psth`.
PSTH_PANEL = (3.2, 2.4)
DPI = 100
#: Colour (0-255 RGB) of channels and units without a known region.
GREY = (217, 217, 217)
_NO_REGION = {'', 'unknown', 'void', 'nan', 'none'}
_GOOD_COLOR = '#1b9e77'
_OTHER_COLOR = '#9e9e9e'
_X_AXES = ('amplitude', 'firing_rate')


@functools.lru_cache(maxsize=1)
def _atlas_colours() -> tuple[dict[int, tuple[int, int, int]], dict[str, tuple[int, int, int]]]:
    """Allen id -> rgb and acronym -> rgb (first, i.e. unlateralised, occurrence)."""
    from iblatlas.regions import BrainRegions

    br = BrainRegions()
    by_id: dict[int, tuple[int, int, int]] = {}
    by_acronym: dict[str, tuple[int, int, int]] = {}
    for rid, acronym, rgb in zip(br.id.tolist(), br.acronym.tolist(), br.rgb.tolist()):
        colour = tuple(int(c) for c in rgb)
        by_id.setdefault(int(rid), colour)
        by_acronym.setdefault(str(acronym), colour)
    return by_id, by_acronym


def _region_rgb(acronym, atlas_id: int | None = None) -> tuple[int, int, int]:
    """Atlas colour of a region, by Allen id when given, else by acronym; grey when unknown."""
    name = '' if acronym is None or (isinstance(acronym, float) and np.isnan(acronym)) else str(acronym)
    if name.strip().lower() in _NO_REGION:
        return GREY
    by_id, by_acronym = _atlas_colours()
    if atlas_id is not None and atlas_id > 0 and int(atlas_id) in by_id:
        return by_id[int(atlas_id)]
    return by_acronym.get(name, GREY)


def _save(fig, output: str | Path) -> Path:
    """Write ``fig`` as a deterministic PNG (fixed dpi, no metadata that changes between runs)."""
    out = Path(output)
    try:
        fig.savefig(out, format='png', dpi=DPI, facecolor='white', metadata={'Software': None})
    except OSError as e:
        raise OutputError(f'{out}: cannot write the figure ({e})') from None
    return out


def _segments(acronym: np.ndarray, atlas_id: np.ndarray, depth: np.ndarray, channel: np.ndarray,
              shank: np.ndarray) -> pd.DataFrame:
    """Runs of equal acronym along depth, per shank; boundaries at mid-depth between neighbouring runs."""
    rows = []
    for sh in np.unique(shank):
        sel = np.flatnonzero(shank == sh)
        sel = sel[np.lexsort((channel[sel], depth[sel]))]
        d = depth[sel].astype(float)
        steps = np.diff(np.unique(d))
        half = float(steps.min()) / 2 if steps.size else 10.0
        names = acronym[sel]
        cut = np.flatnonzero(names[1:] != names[:-1]) + 1
        starts = np.r_[0, cut]
        stops = np.r_[cut, sel.size]
        for i0, i1 in zip(starts, stops):
            lo = d[0] - half if i0 == 0 else (d[i0 - 1] + d[i0]) / 2
            hi = d[-1] + half if i1 == sel.size else (d[i1 - 1] + d[i1]) / 2
            ids = atlas_id[sel[i0:i1]]
            rid = int(ids[0]) if ids.size else -1
            rows.append({'shank': int(sh), 'acronym': str(names[i0]), 'atlas_id': rid, 'start_um': float(lo),
                         'end_um': float(hi), 'n_channels': int(i1 - i0),
                         'rgb': _region_rgb(names[i0], rid)})
    columns = ['shank', 'acronym', 'atlas_id', 'start_um', 'end_um', 'n_channels', 'rgb']
    return pd.DataFrame(rows, columns=columns)


def _read_probe(path, probe: str | None) -> dict:
    """Electrodes and units (no ragged column) of one probe, plus its pid and histology level."""
    with open_export(path) as f:
        f.require('electrodes')
        el = f[layout.ELECTRODES_PATH]
        erows, probe = f.probe_rows(layout.ELECTRODES_PATH, probe)
        e0, e1 = int(erows[0]), int(erows[-1]) + 1
        n = e1 - e0
        channels = {
            'channel_index': el['channel_index'][e0:e1] if 'channel_index' in el else np.arange(n),
            'rel_y': el['rel_y'][e0:e1].astype(float),
            'shank': el['shank'][e0:e1] if 'shank' in el else np.zeros(n, dtype=np.int64),
            'location': f.column(layout.ELECTRODES_PATH, 'location', e0, e1) if 'location' in el
            else np.full(n, layout.UNKNOWN, object),
            'atlas_id': el['atlas_id'][e0:e1].astype(np.int64) if 'atlas_id' in el else np.full(n, -1),
        }
        histology = f.column(layout.ELECTRODES_PATH, 'histology', e0, e0 + 1)[0] if 'histology' in el and n else ''
        prov = f.provenance().get(probe, {})
        units, pid = _probe_units(f, probe, prov.get('pid', ''))
    return {'probe': probe, 'channels': channels, 'units': units, 'pid': pid,
            'histology': prov.get('histology', histology) or histology, 'model': prov.get('model', ''),
            'spike_sorter': prov.get('spike_sorter', '')}


def _probe_units(f, probe: str, pid: str) -> tuple[dict[str, np.ndarray], str]:
    """Depth, label, firing rate and amplitude of a probe's units; the pid from the units if not known."""
    units: dict[str, np.ndarray] = {}
    if layout.UNITS_PATH in f and 'probe_name' in f[layout.UNITS_PATH]:
        u = f[layout.UNITS_PATH]
        sel = f.column(layout.UNITS_PATH, 'probe_name') == probe
        for col in ('depth', 'label', 'firing_rate', 'amp_median'):
            units[col] = u[col][:][sel].astype(float) if col in u else np.full(int(sel.sum()), np.nan)
        if not pid and 'pid' in u and sel.any():
            pid = f.column(layout.UNITS_PATH, 'pid')[sel][0]
    return units, pid


def probe_regions(path: str | Path, probe: str | None = None) -> pd.DataFrame:
    """Brain regions along a probe: one row per run of channels in the same region, per shank.

    Channels of each shank are taken in depth order (``rel_y``, then ``channel_index``); a run is a
    maximal sequence of consecutive channels with the same ``location``. Boundaries between runs
    lie half way between the last channel of one run and the first of the next, and the probe ends
    half a row pitch beyond its outermost channels, so that the runs of a shank tile its extent.
    This is what :func:`plot_probe` draws in its left panel.

    Parameters
    ----------
    path : str or pathlib.Path
        An NWB file written by alfnwb.
    probe : str, optional
        Probe name (``probe00``); needed when the file holds several probes.

    Returns
    -------
    pandas.DataFrame
        Columns ``shank``, ``acronym`` (Allen, from the electrodes' ``location``), ``atlas_id``,
        ``start_um`` and ``end_um`` (µm along the probe from the tip), ``n_channels`` and ``rgb``
        (a tuple of three 0-255 ints: the Allen atlas colour, light grey for ``unknown``/``void``).

    Raises
    ------
    alfnwb.errors.NWBReadError
        The file is not an alfnwb export, or ``probe`` is missing/unknown.
    """
    ch = _read_probe(path, probe)['channels']
    return _segments(ch['location'], ch['atlas_id'], ch['rel_y'], ch['channel_index'], ch['shank'])


def _place_labels(segments: pd.DataFrame, min_gap: float) -> list[int]:
    """Label column (0 or 1) of each segment, staggering labels closer than ``min_gap`` µm."""
    columns = []
    last = [-np.inf, -np.inf]
    for start, end in zip(segments['start_um'], segments['end_um']):
        mid = (start + end) / 2
        col = 0 if mid - last[0] >= min_gap else (1 if mid - last[1] >= min_gap else int(last[1] < last[0]))
        last[col] = mid
        columns.append(col)
    return columns


def _probe_figure(data: dict, regions: pd.DataFrame, x: str):
    from matplotlib.figure import Figure

    ch, units = data['channels'], data['units']
    shanks = sorted(regions['shank'].unique())
    fig = Figure(figsize=PROBE_FIGSIZE, dpi=DPI)
    grid = fig.add_gridspec(1, 2, width_ratios=(1.3, 2.7) if len(shanks) == 1 else (2.3, 2.5), wspace=0.06,
                            left=0.1, right=0.97, top=0.88, bottom=0.07)
    ax_r = fig.add_subplot(grid[0])
    ax_u = fig.add_subplot(grid[1], sharey=ax_r)
    depths = [ch['rel_y']]
    if units.get('depth') is not None and units['depth'].size:
        depths.append(units['depth'][np.isfinite(units['depth'])])
    lo = min(float(regions['start_um'].min()), float(np.concatenate(depths).min()))
    hi = max(float(regions['end_um'].max()), float(np.concatenate(depths).max()))
    pad = 0.02 * (hi - lo or 100.0)
    _regions_panel(ax_r, regions, shanks, (lo - pad, hi + pad))
    _units_panel(ax_u, units, regions, shanks, x)
    head = ' · '.join(v for v in (data['probe'], data['model'], data['spike_sorter']) if v)
    fig.suptitle(f'{head}\npid {data["pid"] or "?"}   histology: {data["histology"] or "?"}', fontsize=11)
    return fig


def _regions_panel(ax_r, regions: pd.DataFrame, shanks: list, ylim: tuple[float, float]) -> None:
    """Left panel: the region strip of each shank, its acronyms beside it."""
    from matplotlib.patches import Rectangle

    strip, label_w = 1.0, 2.6 if len(shanks) == 1 else 2.2
    fontsize = 8 if len(shanks) == 1 else 6.5
    pitch = strip + label_w
    axes_h_pt = ax_r.get_position().height * PROBE_FIGSIZE[1] * 72
    min_gap = 1.15 * fontsize * (ylim[1] - ylim[0]) / axes_h_pt
    for k, sh in enumerate(shanks):
        seg = regions[regions['shank'] == sh].sort_values('start_um')
        x0 = k * pitch
        for (start, end, rgb) in zip(seg['start_um'], seg['end_um'], seg['rgb']):
            ax_r.add_patch(Rectangle((x0, start), strip, end - start, facecolor=np.asarray(rgb) / 255,
                                     edgecolor='none'))
        for end in seg['end_um'].iloc[:-1]:  # boundaries: neighbours may share a colour (layers)
            ax_r.plot([x0, x0 + strip], [end, end], color='#333333', linewidth=0.5)
        ax_r.add_patch(Rectangle((x0, seg['start_um'].min()), strip, seg['end_um'].max() - seg['start_um'].min(),
                                 facecolor='none', edgecolor='#333333', linewidth=0.8))
        for start, end, acronym, col in zip(seg['start_um'], seg['end_um'], seg['acronym'],
                                            _place_labels(seg, min_gap)):
            xt = x0 + strip + 0.12 + col * label_w * 0.5
            ax_r.text(xt, (start + end) / 2, acronym, va='center', ha='left', fontsize=fontsize, clip_on=True)
    ax_r.set_xlim(-0.1, len(shanks) * pitch)
    ax_r.set_ylim(*ylim)
    if len(shanks) > 1:
        ax_r.set_xticks([k * pitch + strip / 2 for k in range(len(shanks))], [f'shank {s}' for s in shanks],
                        fontsize=7)
    else:
        ax_r.set_xticks([])
    ax_r.set_ylabel('depth along the probe (µm from the tip)')
    for side in ('top', 'right', 'bottom'):
        ax_r.spines[side].set_visible(False)
    ax_r.set_title('brain regions', fontsize=10)


def _units_panel(ax_u, units: dict, regions: pd.DataFrame, shanks: list, x: str) -> None:
    """Right panel: units at their depth, by quality."""
    from matplotlib.lines import Line2D

    good = np.isclose(units.get('label', np.zeros(0)), 1.0)
    depth = units.get('depth', np.zeros(0))
    if x == 'amplitude':
        xs = units.get('amp_median', np.zeros(0)) * 1e6
        ax_u.set_xlabel('median amplitude (µV)')
    else:
        xs = units.get('firing_rate', np.zeros(0))
        ax_u.set_xscale('log', nonpositive='clip')
        ax_u.set_xlabel('firing rate (Hz, log scale; 0 Hz at the left edge)')
    if len(shanks) == 1:  # region boundaries carried across, to read units against regions
        for end in sorted(regions['end_um'])[:-1]:
            ax_u.axhline(end, color='#cccccc', linewidth=0.6, zorder=0)
    for sel, colour in ((~good, _OTHER_COLOR), (good, _GOOD_COLOR)):
        ax_u.scatter(xs[sel], depth[sel], s=30, color=colour, edgecolors='white', linewidths=0.5, zorder=2)
    handles = [Line2D([], [], marker='o', linestyle='', color=colour, label=text) for colour, text in
               ((_GOOD_COLOR, f'good (label = 1): {int(good.sum())}'), (_OTHER_COLOR, f'other: {int((~good).sum())}'))]
    ax_u.legend(handles=handles, loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=9, frameon=False,
                title=f'{good.size} units', title_fontsize=10)
    ax_u.tick_params(axis='y', labelleft=False)
    ax_u.grid(True, axis='x', color='#eeeeee', linewidth=0.6, zorder=0)
    if x == 'amplitude' and xs.size and np.isfinite(xs).any():
        ax_u.set_xlim(0, float(np.nanmax(xs)) * 1.08 or 1.0)
    for side in ('top', 'right'):
        ax_u.spines[side].set_visible(False)


def plot_probe(path: str | Path, probe: str | None = None, output: str | Path = 'probe.png',
               x: str = 'amplitude') -> Path:
    """Draw a probe in the style of IBL's probe plots: brain regions along depth, units beside them.

    The left panel is the probe (one strip per shank) along depth (``rel_y``), coloured by the
    Allen atlas colour of each channel's region, with each run's acronym written beside it at its
    middle (see :func:`probe_regions`; ``unknown`` and ``void`` are light grey). The right panel,
    on the same depth axis, has one point per unit at its ``depth``: median amplitude in µV, or
    firing rate in Hz on a log scale, green for good units (``label == 1``) and grey for the
    others, with counts in the legend. The title gives probe name, pid and histology level.
    Reads the electrodes table and a few units columns only (never the spikes).

    Parameters
    ----------
    path : str or pathlib.Path
        An alfnwb export.
    probe : str, optional
        The probe to draw (``probe00``); needed when the file holds several.
    output : str or pathlib.Path
        PNG file to write (its folder must exist), :data:`PROBE_FIGSIZE` * :data:`DPI` pixels.
    x : {'amplitude', 'firing_rate'}
        What the units' horizontal axis shows.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    alfnwb.errors.NWBReadError
        The file is not an alfnwb export, or it holds several probes and ``probe`` is not given
        (the message names them), or ``probe`` is not in it.
    alfnwb.errors.AlfNwbError
        ``x`` is neither ``'amplitude'`` nor ``'firing_rate'``.
    alfnwb.errors.OutputError
        ``output`` cannot be written.
    """
    if x not in _X_AXES:
        raise AlfNwbError(f"plot_probe: x={x!r}; use one of {', '.join(_X_AXES)}")
    data = _read_probe(path, probe)
    ch = data['channels']
    regions = _segments(ch['location'], ch['atlas_id'], ch['rel_y'], ch['channel_index'], ch['shank'])
    fig = _probe_figure(data, regions, x)
    return _save(fig, output)


def _region_counts(units: pd.DataFrame, column: str) -> pd.DataFrame:
    regions = units[column].astype(object).where(units[column].notna(), 'unknown').astype(str)
    regions = regions.where(regions.str.strip() != '', 'unknown')
    label = pd.to_numeric(units['label'], errors='coerce') if 'label' in units else pd.Series(np.nan, units.index)
    good = np.isclose(label.to_numpy(dtype=float), 1.0)
    counts = pd.DataFrame({'region': regions.to_numpy(), 'good': good})
    table = counts.groupby('region').agg(n_units=('good', 'size'), n_good=('good', 'sum')).reset_index()
    table['n_good'] = table['n_good'].astype(int)
    return table.sort_values(['n_units', 'n_good', 'region'], ascending=[False, False, True], ignore_index=True)


def _mapping_column(units: pd.DataFrame, mapping: str) -> tuple[str, str]:
    """The mapping's name (case-insensitive) and the units column it reads."""
    key = {k.lower(): k for k in MAPPINGS}.get(str(mapping).lower())
    if key is None:
        raise AlfNwbError(f"plot_regions: unknown mapping {mapping!r}; use one of {', '.join(MAPPINGS)}")
    if MAPPINGS[key] not in units:
        raise AlfNwbError(f'plot_regions: the units have no {MAPPINGS[key]!r} column (needed by mapping {key})')
    return key, MAPPINGS[key]


def plot_regions(units: pd.DataFrame, output: str | Path = 'regions.png', mapping: str = 'Allen',
                 top: int = 30) -> Path:
    """Horizontal bar chart of units per brain region: all units, of which good ones.

    One bar per region, the ``top`` regions with most units, most first. Each bar is stacked:
    good units (``label == 1``) in the region's Allen atlas colour, the other units in a lighter,
    hatched tint of it (``unknown``/``void``/unknown acronyms in grey); the bar end reads
    ``all (good)``.

    Parameters
    ----------
    units : pandas.DataFrame
        One row per unit with columns ``acronym`` (Allen), ``beryl_acronym``, ``cosmos_acronym``
        (only the one ``mapping`` needs is required) and ``label`` (IBL quality; missing or NaN
        counts as not good), e.g. :func:`alfnwb.reanalysis.read_units`'s output.
    output : str or pathlib.Path
        PNG file to write (its folder must exist), :data:`REGIONS_FIGSIZE` * :data:`DPI` pixels.
    mapping : {'Allen', 'Beryl', 'Cosmos'}
        Region mapping (case-insensitive): Allen reads ``acronym``, Beryl ``beryl_acronym``,
        Cosmos ``cosmos_acronym``.
    top : int
        Number of regions drawn.

    Returns
    -------
    pathlib.Path
        The PNG written (``output``).

    Raises
    ------
    alfnwb.errors.AlfNwbError
        Unknown ``mapping``, ``top`` < 1, or ``units`` lacks the mapping's column.
    alfnwb.errors.OutputError
        ``output`` cannot be written.
    """
    from matplotlib.figure import Figure

    key, column = _mapping_column(units, mapping)
    if int(top) < 1:
        raise AlfNwbError(f'plot_regions: top={top}; draw at least one region')
    table = _region_counts(units, column)
    shown = table.head(int(top))

    fig = Figure(figsize=REGIONS_FIGSIZE, dpi=DPI)
    ax = fig.add_axes((0.16, 0.08, 0.78, 0.82))
    _region_bars(ax, shown)
    ax.set_xlabel('units')
    ax.grid(True, axis='x', color='#eeeeee', linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)
    total, n_good_all = int(table['n_units'].sum()), int(table['n_good'].sum())
    more = f', top {len(shown)} of {len(table)}' if len(table) > len(shown) else ''
    fig.suptitle(f'Units per region ({key} mapping{more})\n{total} units, {n_good_all} good', fontsize=11)
    return _save(fig, output)


def _region_bars(ax, shown: pd.DataFrame) -> None:
    """One stacked bar per region: good units in the atlas colour, the others lighter and hatched."""
    from matplotlib.patches import Patch

    if len(shown):
        y = np.arange(len(shown))
        rgb = np.array([_region_rgb(r) for r in shown['region']], dtype=float) / 255
        light = 1 - 0.45 * (1 - rgb)  # the same hue, washed towards white
        n_all = shown['n_units'].to_numpy()
        n_good = shown['n_good'].to_numpy()
        ax.barh(y, n_good, color=rgb, edgecolor='#444444', linewidth=0.6, height=0.75)
        ax.barh(y, n_all - n_good, left=n_good, color=light, edgecolor='#444444', linewidth=0.6, height=0.75,
                hatch='///')
        span = float(n_all.max())
        for yi, a, g in zip(y, n_all, n_good):
            ax.text(a + span * 0.01, yi, f'{a} ({g} good)', va='center', ha='left', fontsize=8)
        ax.set_yticks(y, shown['region'].tolist(), fontsize=8 if len(shown) <= 30 else 6)
        ax.set_ylim(max(len(shown), 10) - 0.5, -0.5)  # thin bars even when there are few regions
        ax.set_xlim(0, span * 1.2)
        ax.legend(handles=[Patch(facecolor='#8c8c8c', edgecolor='#444444', label='good units (label = 1): solid'),
                           Patch(facecolor='#e2e2e2', edgecolor='#444444', hatch='///',
                                 label='other units: lighter, hatched')],
                  loc='lower right', fontsize=8, framealpha=0.9)
    else:
        ax.text(0.5, 0.5, 'no units', transform=ax.transAxes, ha='center', va='center', fontsize=12)
        ax.set_yticks([])


_SUMMARY_COLUMNS = {'region', 'event', 'time', 'rate_mean', 'rate_sem', 'n_units'}


def _condition_labels(summary: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each row's condition index and the conditions' legend labels (sorted; NaN last, as ``nan``)."""
    if not by:
        return np.zeros(len(summary), np.int64), ['all trials']
    groups = summary.groupby(by, dropna=False, sort=True)
    codes = groups.ngroup().to_numpy(np.int64)
    keys = [k if isinstance(k, tuple) else (k,) for k in groups.size().index]  # in ngroup's order
    labels = [', '.join(f'{c}={v:g}' if isinstance(v, (int, float, np.number)) else f'{c}={v}'
                        for c, v in zip(by, key)) for key in keys]
    return codes, labels


def plot_psth(summary: pd.DataFrame, output: str | Path = 'psth.png', ncols: int = 4) -> Path:
    """One panel per region: mean rate around an event +- SEM across units, one line per condition.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`alfnwb.peri_event_by_region` (``region``, the condition columns, ``event``,
        ``time``, ``rate_mean``, ``rate_sem``, ``n_units``).
    output : str or pathlib.Path
        PNG file to write (its folder must exist); :data:`PSTH_PANEL` inches per panel at :data:`DPI`.
    ncols : int
        Panels per row.

    Returns
    -------
    pathlib.Path
        The PNG written (``output``); the same input gives a byte-identical file.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if summary.empty:
        raise AlfNwbError('plot_psth: no units (empty peri-event summary)')
    by = [c for c in summary.columns if c not in _SUMMARY_COLUMNS]
    codes, labels = _condition_labels(summary, by)
    regions = sorted(summary['region'].astype(str).unique())
    ncols = max(1, min(int(ncols), len(regions)))
    nrows = -(-len(regions) // ncols)
    fig = Figure(figsize=(PSTH_PANEL[0] * ncols, PSTH_PANEL[1] * nrows + 0.8), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = colormaps['viridis'](np.linspace(0, 0.9, max(len(labels), 1)))
    region_of = summary['region'].astype(str).to_numpy()
    for ax, region in zip(axes.ravel(), regions):
        sel = region_of == region
        for k, label in enumerate(labels):
            rows = summary[sel & (codes == k)].sort_values('time')
            if rows.empty:
                continue
            t, m, e = (rows[c].to_numpy(float) for c in ('time', 'rate_mean', 'rate_sem'))
            ax.plot(t, m, color=colours[k], linewidth=1.2, label=label)
            ax.fill_between(t, m - np.nan_to_num(e), m + np.nan_to_num(e), color=colours[k], alpha=0.2, linewidth=0)
        ax.axvline(0.0, color='#888888', linewidth=0.6, linestyle='--')
        ax.set_title(f'{region} ({int(summary.loc[sel, "n_units"].max())} units)', fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(regions):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f's from {summary["event"].iloc[0]}', fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel('rate (Hz)', fontsize=8)
    axes[0, 0].legend(fontsize=6, frameon=False)
    fig.suptitle(f'Responses to {summary["event"].iloc[0]} by region (mean +- SEM across units)', fontsize=10)
    fig.tight_layout()
    return _save(fig, output)
