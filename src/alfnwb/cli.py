"""``alfnwb`` command line: a thin layer over the Python API.

Heavy libraries (brainbox, pynwb, spikeinterface) are imported inside the commands, so that
``alfnwb --help`` answers at once. Every user error is one line on stderr and a non-zero exit code;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import AlfNwbError, AlfNwbWarning, PerformanceWarning

HISTOLOGY_CHOICES = ('alf', 'resolved', 'aligned', 'traced', 'none')


class Progress:
    """Step messages with elapsed time on stderr (silent with --quiet)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f'[{time.perf_counter() - self.t0:6.1f}s] {msg}', file=sys.stderr, flush=True)


def make_one(cache_dir: str | None, mode: str = 'auto', base_url: str | None = None):
    """A ONE instance from command line options: local on a cache, or remote on Alyx.

    The credentials of a database come from the environment (``ALYX_USERNAME``, ``ALYX_PASSWORD``,
    never from the command line, where other users could read them), else from ONE's stored login
    and token (an earlier login).
    """
    import os

    from .loading import open_one

    if mode == 'auto':
        mode = 'remote' if base_url else 'local'
    if cache_dir and not Path(cache_dir).is_dir():
        raise AlfNwbError(f'--cache-dir {cache_dir}: no such folder')
    if mode == 'local' and not cache_dir:
        raise AlfNwbError('--mode local needs --cache-dir (a folder with sessions.pqt and datasets.pqt)')
    return open_one(base_url, cache_dir, mode, username=os.environ.get('ALYX_USERNAME') or None,
                    password=os.environ.get('ALYX_PASSWORD') or None)


def _add_one_options(p):
    p.add_argument('--cache-dir', help='ONE cache folder (sessions.pqt, datasets.pqt, insertions.pqt, ALF files)')
    p.add_argument('--mode', choices=('local', 'remote', 'auto'), default='auto',
                   help='ONE mode (auto: remote with --base-url, otherwise local)')
    p.add_argument('--base-url', help='Alyx database URL, e.g. https://openalyx.internationalbrainlab.org')


def cmd_synth(args, progress):
    from .synthetic import write_cache

    progress(f'writing {args.sessions} synthetic session(s) to {args.cache_dir}')
    cache = write_cache(args.cache_dir, seed=args.seed, sessions=args.sessions, n_units=args.units,
                        duration=args.duration, raw=args.raw)
    for s in cache.sessions:
        print(f'session {s.eid}  {s.lab}/{s.subject}/{s.date}/{s.number:03d}')
        for p in s.probes:
            sorters = ', '.join((x.sorter or 'kilosort2.5') + (f'#{x.revision}#' if x.revision else '')
                                for x in p.sortings)
            print(f'  pid {p.pid}  {p.name} {p.layout:5s} histology={p.histology:8s} sorters: {sorters}')
    return 0


def _print_info(summary: dict) -> None:
    s = summary['session']
    print(f'session {s["eid"]}  subject {s["subject"]}  lab {s["lab"]}  start {s["session_start_time"]}')
    if 'trials' in summary:
        count = f'{summary["trials"]} trials' if summary['trials'] is not None else 'no trials table'
        print(f'  task {s.get("task_protocol") or "unknown"}: {count}')
    for p in summary['probes']:
        regions = ', '.join(f'{r} ({n})' for r, n in list(p['unit_regions'].items())[:8])
        print(f'  {p["probe"]}: pid {p.get("pid", "?")}  sorter {p.get("spike_sorter", "?")}  collection '
              f'{p.get("collection", "?")}  revision {p.get("revision") or "unrevisioned"}  histology '
              f'{p.get("histology", "?")}')
        print(f'    {p["channels"]} channels in {p["channel_regions"]} regions; {p["units"]} units '
              f'({p["good_units"]} good); units by region: {regions or "-"}')
        print(f'    analyzer extensions: {", ".join(p.get("extensions", [])) or "none"}')
        for line in str(p.get('warnings') or '').splitlines():
            print(f'    warning: {line}')


def _extension_params(args) -> dict:
    params = {}
    if args.max_spikes_per_unit is not None:
        params['random_spikes'] = {'max_spikes_per_unit': args.max_spikes_per_unit}
    if args.correlogram_window_ms is not None or args.correlogram_bin_ms is not None:
        params['correlograms'] = {k: v for k, v in (('window_ms', args.correlogram_window_ms),
                                                    ('bin_ms', args.correlogram_bin_ms)) if v is not None}
    return params


def cmd_export(args, progress):
    from .export import export
    from .nwb.io import check_output

    if (args.pid is None) == (args.eid is None):
        raise AlfNwbError('give exactly one of --pid or --eid')
    if args.probe and not args.eid:
        raise AlfNwbError('--probe goes with --eid')
    check_output(args.output, args.overwrite)
    progress('opening ONE')
    one = make_one(args.cache_dir, args.mode, args.base_url)
    atlas = None
    if args.allen_atlas:
        from iblatlas.atlas import AllenAtlas

        progress('loading the Allen atlas (downloads its volumes once)')
        atlas = AllenAtlas()
    result = export(one, args.output, pid=args.pid, eid=args.eid, probe=args.probe, spike_sorter=args.spike_sorter,
                    revision=args.revision, min_histology=args.min_histology, atlas=atlas, metadata=args.metadata,
                    overwrite=args.overwrite, compression=None if args.compression == 'none' else args.compression,
                    extensions=args.extensions, raw=args.raw, n_jobs=args.jobs,
                    extension_params=_extension_params(args), strict=args.strict, progress=progress,
                    trials=not args.no_trials)
    progress('done')
    for p in result.probes:
        print(f'{p.probe}: pid {p.pid}  {p.collection}  revision {p.revision or "unrevisioned"}  histology {p.histology}')
    if result.extensions:
        print(f'analyzer extensions: {", ".join(result.extensions)}')
    print(f'wrote {result.path} ({result.n_units} units, {result.n_electrodes} electrodes)')
    return 0


def cmd_batch(args, progress):
    from .batch import plan_jobs, read_id_list, run_batch

    chosen = [x for x in (args.pids, args.eids, args.all or None) if x]
    if len(chosen) != 1:
        raise AlfNwbError('give exactly one of --pids FILE, --eids FILE or --all')
    if args.workers < 1:
        raise AlfNwbError('--workers must be at least 1')
    progress('opening ONE')
    one = make_one(args.cache_dir, args.mode, args.base_url)
    pids = read_id_list(args.pids, 'pid') if args.pids else None
    eids = read_id_list(args.eids, 'eid') if args.eids else None
    jobs = plan_jobs(one, pids=pids, eids=eids, all_insertions=args.all, per=args.per)
    progress(f'{len(jobs)} file(s) to produce in {args.dandiset_dir}')
    # the workers open what planning opened: the same database, mode and cache (and the login's stored token)
    one_args = {'cache_dir': str(Path(one.cache_dir).resolve())}
    if hasattr(one, 'alyx'):
        one_args.update(base_url=one.alyx.base_url, mode=one.mode)
        one_args.update({'username': one.alyx.user} if one.alyx.user else {})
    export_kwargs = {'spike_sorter': args.spike_sorter, 'revision': args.revision,
                     'min_histology': args.min_histology, 'extensions': args.extensions,
                     'compression': None if args.compression == 'none' else args.compression,
                     'strict': args.strict}
    report = run_batch(jobs, args.dandiset_dir, one_args, workers=args.workers, scheduler=args.scheduler,
                       validate=args.validate, retries=args.retries, export_kwargs=export_kwargs,
                       progress=not args.quiet)
    print(report.summary())
    print(f'manifest: {Path(args.dandiset_dir) / ".alfnwb" / "manifest.parquet"}')
    if report.done:
        from .reanalysis import update_catalog

        cat = update_catalog(args.dandiset_dir)
        print(f'catalog: {cat.path} ({cat.n_units} units in {cat.n_files} files)')
    return 0 if report.ok else 9


def cmd_catalog(args, progress):
    from .reanalysis import update_catalog

    progress(f'scanning {args.folder}')
    r = update_catalog(args.folder, args.output)
    print(f'{r.path}: {r.n_units} units in {r.n_files} files ({r.n_read} read, {r.n_files - r.n_read} unchanged, '
          f'{r.n_removed} removed)')
    return 0


def _regions_arg(values):
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(',') if v.strip()]
    return out or None


def cmd_units(args, progress):
    from .reanalysis import read_units

    df = read_units(args.source, region=_regions_arg(args.region), mapping=args.mapping,
                    descendants=not args.exact, min_label=args.min_label)
    if args.output:
        out = Path(args.output)
        if out.suffix in ('.parquet', '.pqt'):
            df.to_parquet(out, index=False)
        elif out.suffix == '.csv':
            df.to_csv(out, index=False)
        else:
            raise AlfNwbError(f'--output {out}: use a .csv or .parquet file name')
        print(f'wrote {len(df)} units to {out}')
        return 0
    import pandas as pd

    region_col = {'Allen': 'acronym', 'Beryl': 'beryl_acronym', 'Cosmos': 'cosmos_acronym'}[args.mapping]
    cols = [c for c in ('eid', 'probe', 'cluster_id', region_col, 'hemisphere', 'depth', 'label', 'firing_rate',
                        'n_spikes') if c in df]
    view = df[cols].copy()
    view['eid'] = view['eid'].str[:8]
    with pd.option_context('display.max_rows', args.max_rows, 'display.width', 160,
                           'display.float_format', '{:.4g}'.format):
        print(view.to_string(index=False, max_rows=args.max_rows) if len(view) else '(no units)')
    print(f'{len(df)} units in {df["file"].nunique() if len(df) else 0} files')
    return 0


def cmd_plot(args, progress):
    from . import plots
    from .reanalysis import read_units

    if args.what == 'probe':
        out = plots.plot_probe(args.source, probe=args.probe, output=args.output, x=args.x)
    elif args.what == 'psth':
        from .events import peri_event_by_region

        out = plots.plot_psth(peri_event_by_region(_psth_table(args), mapping=args.mapping), output=args.output)
    else:
        df = read_units(args.source, region=_regions_arg(args.region), mapping=args.mapping,
                        min_label=args.min_label)
        out = plots.plot_regions(df, output=args.output, mapping=args.mapping)
    print(f'wrote {out}')
    return 0


def _psth_options(p, required: bool) -> None:
    """Options of ``alfnwb psth`` and ``alfnwb plot psth``."""
    p.add_argument('--event', required=required, help='trials column of event times, e.g. stimOn_times '
                                                      '(psth; plot psth)')
    p.add_argument('--window', type=float, nargs=2, default=(-0.2, 0.5), metavar=('START', 'STOP'),
                   help='s around the event (default -0.2 0.5)')
    p.add_argument('--bin', type=float, default=0.01, help='bin size, s (default 0.01)')
    p.add_argument('--by', help='trials columns making the conditions, comma separated (e.g. contrastLeft,choice)')
    p.add_argument('--trials', help='trials to use: a pandas expression on the trials table, e.g. "feedbackType == 1"')
    p.add_argument('--protocol', help='only files whose task protocol contains this text')


def _psth_table(args):
    """peri_event of the units the options select."""
    from .events import peri_event
    from .reanalysis import read_units

    if not args.event:
        raise AlfNwbError('plot psth: give --event (a trials column, e.g. stimOn_times)')
    units = read_units(args.source, region=_regions_arg(args.region), mapping=args.mapping,
                       min_label=args.min_label, protocol=args.protocol)
    by = [b.strip() for b in args.by.split(',') if b.strip()] if args.by else None
    return peri_event(units, args.event, window=tuple(args.window), bin_size=args.bin, by=by, trials=args.trials)


def cmd_psth(args, progress):
    out = Path(args.output)
    if out.suffix not in ('.parquet', '.pqt', '.csv'):
        raise AlfNwbError(f'--output {out}: use a .csv or .parquet file name')
    progress(f'counting spikes around {args.event}')
    df = _psth_table(args)
    if out.suffix == '.csv':
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    n_units = len(df[['file', 'unit_row']].drop_duplicates()) if len(df) else 0
    print(f'wrote {len(df)} rows ({n_units} units) to {out}')
    return 0


def cmd_upload(args, progress):
    from .dandi import upload

    return upload(args.dandiset_dir, instance=args.dandi_instance)


def cmd_info(args, progress):
    from .readback import info

    summary = info(args.file)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        _print_info(summary)
    return 0


#: Length of ``alfnwb demo --raw``'s session (its raw band is ~770 bytes per sample, written and filtered).
DEMO_RAW_SECONDS = 20.0


def cmd_demo(args, progress):
    from one.api import One

    from .export import export
    from .readback import info

    out = Path(args.output)
    cache_dir = out / 'one_cache'
    progress(f'synthesizing an IBL session into {cache_dir}')
    raw = getattr(args, 'raw', False)
    cache = _synthesize_while_importing(cache_dir, seed=args.seed, sessions=1, **(
        {'raw': ('probe00',), 'duration': DEMO_RAW_SECONDS} if raw else {}))
    session = cache.sessions[0]
    one = One(cache_dir=cache_dir, mode='local')
    path = out / f'sub-{session.subject}_ses-{session.eid}_ecephys.nwb'
    progress(f'exporting session {session.eid} ({len(session.probes)} probes)')
    # with --raw, everything the waveforms give (waveforms, PCA: the point of that demo)
    export(one, path, eid=session.eid, overwrite=True, strict=args.strict, progress=progress,
           extensions='all' if raw else None)
    progress('done')
    print(f'wrote {path.resolve()}')
    _print_info(info(path))
    return 0


def _synthesize_while_importing(cache_dir: Path, **kwargs):
    """:func:`alfnwb.synthetic.write_cache` in a forked process while this one imports what the export
    needs (:func:`alfnwb.export.preload`): seconds of each, on two cores at once. One after the other
    here where forking is not safe: not Linux (fork is not the default elsewhere), or other threads
    alive (:func:`alfnwb.nwb.io.fork_blocker`). An error of the synthesis is raised here."""
    from .export import preload
    from .nwb.io import fork_blocker
    from .synthetic import write_cache

    if sys.platform != 'linux' or fork_blocker() is not None:
        cache = write_cache(cache_dir, **kwargs)
        preload()
        return cache
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forked before any other thread runs here; the pool is shut down (its threads joined) before the
    # export, whose writer forks only when no other thread is alive
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context('fork')) as pool:
        future = pool.submit(write_cache, cache_dir, **kwargs)
        preload()
        return future.result()


def _add_run_options(p) -> None:
    """--strict and --quiet after the command too (``alfnwb export --strict ...``)."""
    p.add_argument('--strict', action='store_true', default=argparse.SUPPRESS,
                   help='fail on any degradation (data left out, a fallback taken) instead of warning')
    p.add_argument('--quiet', action='store_true', default=argparse.SUPPRESS,
                   help='no progress messages (warnings are still shown)')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='alfnwb', description='Export IBL spike sorting (ONE / ALF) to NWB.')
    parser.add_argument('--debug', action='store_true', help='show tracebacks')
    parser.add_argument('--quiet', action='store_true', help='no progress messages (warnings are still shown)')
    parser.add_argument('--strict', action='store_true',
                        help='fail on any degradation (data left out, a fallback taken) instead of warning')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('export', help='export one insertion (--pid) or session (--eid) to one NWB file')
    p.add_argument('--pid', help='probe insertion id')
    p.add_argument('--eid', help='session id (all probes, or --probe)')
    p.add_argument('--probe', help='with --eid: the one probe to export (e.g. probe00)')
    p.add_argument('--output', '-o', required=True, help='output .nwb file')
    _add_one_options(p)
    p.add_argument('--spike-sorter', help='iblsorter, pykilosort or kilosort2.5 (default: the first present, in that order)')
    p.add_argument('--revision', help='dataset revision, e.g. 2024-05-06, or "unrevisioned" (default: the default revision)')
    p.add_argument('--min-histology', choices=HISTOLOGY_CHOICES, default='none',
                   help='refuse insertions whose histology is below this level (alf > resolved > aligned > traced > none)')
    p.add_argument('--allen-atlas', action='store_true',
                   help='load the Allen atlas volume (downloaded once) for histology held in Alyx')
    p.add_argument('--metadata', help='YAML/JSON file with NWBFile and Subject fields overriding the defaults')
    p.add_argument('--compression', choices=('gzip', 'lzf', 'none'), default='gzip',
                   help='HDF5 filter of the per-spike datasets')
    p.add_argument('--extensions', default='default', metavar='all|none|default|NAME,...',
                   help='SortingAnalyzer extensions written per probe (ndx-spikesorting). default: random_spikes, '
                        'templates, spike_amplitudes, spike_locations, unit_locations, correlograms, '
                        'isi_histograms, template_similarity, quality_metrics (+ waveforms, noise_levels, '
                        'principal_components with --raw). all: also waveforms and principal_components from '
                        'IBL\'s waveforms.* when the sorting has them (GBs per probe). Combine: default,waveforms')
    p.add_argument('--raw', action='store_true',
                   help='compute waveforms, noise_levels and principal_components from the local raw AP band '
                        '(raw_ephys_data/<probe>/*.ap.cbin)')
    p.add_argument('--max-spikes-per-unit', type=int, help='random spikes per unit (default 100)')
    p.add_argument('--correlogram-window-ms', type=float, help='correlogram window, ms (default 50)')
    p.add_argument('--correlogram-bin-ms', type=float, help='correlogram bin, ms (default 1)')
    p.add_argument('--jobs', type=int, default=None,
                   help='threads compressing the output (default: the cores available) and processes for the '
                        'raw-data extensions (default: 1)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    p.add_argument('--no-trials', action='store_true', help='leave the session\'s trials (NWB trials table) out')
    _add_run_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser('batch', help='export many insertions/sessions into a validated, DANDI-organized folder '
                                     '(resumable, parallel)')
    p.add_argument('--pids', metavar='FILE', help='pids: text (one per line), CSV or parquet with a pid column')
    p.add_argument('--eids', metavar='FILE', help='eids: text (one per line), CSV or parquet with an eid column')
    p.add_argument('--all', action='store_true', help='every insertion of the ONE cache')
    p.add_argument('--dandiset-dir', required=True, help='output folder (dandiset.yaml created if missing)')
    _add_one_options(p)
    p.add_argument('--per', choices=('insertion', 'session'),
                   help='one file per insertion (default for --pids/--all) or per session (default for --eids)')
    p.add_argument('--workers', type=int, default=1, help='local processes (default 1)')
    p.add_argument('--scheduler', metavar='ADDRESS', help='run on a Dask cluster, e.g. tcp://10.0.0.5:8786')
    p.add_argument('--validate', action=argparse.BooleanOptionalAction, default=True,
                   help='check each file with nwbinspector and dandi validate (default on)')
    p.add_argument('--retries', type=int, default=0, help='extra attempts after an unexpected (non-data) error')
    p.add_argument('--spike-sorter')
    p.add_argument('--revision')
    p.add_argument('--min-histology', choices=HISTOLOGY_CHOICES, default='none')
    p.add_argument('--extensions', default='default', metavar='all|none|default|NAME,...')
    p.add_argument('--compression', choices=('gzip', 'lzf', 'none'), default='gzip')
    _add_run_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser('catalog', help='scan a dandiset folder into a catalog (one parquet row per unit), '
                                       'incrementally')
    p.add_argument('folder')
    p.add_argument('--output', help='catalog file (default FOLDER/.alfnwb/catalog.parquet)')
    p.set_defaults(func=cmd_catalog)

    def _selection(p):
        p.add_argument('--region', action='append', metavar='ACRONYM|ID[,...]',
                       help='Allen acronyms or ids; a parent region selects everything below it')
        p.add_argument('--mapping', choices=('Allen', 'Beryl', 'Cosmos'), default='Allen',
                       help='parcellation the unit regions are remapped to before matching')
        p.add_argument('--min-label', type=float, help='minimum IBL label (1: good units)')

    p = sub.add_parser('units', help='units of NWB files, a folder, a catalog or a URL, by region')
    p.add_argument('source', help='NWB file, http(s) URL, dandiset folder or catalog .parquet')
    _selection(p)
    p.add_argument('--exact', action='store_true', help='match the region itself only, not its descendants')
    p.add_argument('--output', '-o', help='write all columns to a .csv or .parquet file')
    p.add_argument('--max-rows', type=int, default=40, help='rows printed (default 40)')
    p.set_defaults(func=cmd_units)

    p = sub.add_parser('plot', help='pictures: a probe along depth by region, or units per region')
    p.add_argument('what', choices=('probe', 'regions', 'psth'))
    p.add_argument('source', help='probe: an NWB file; regions, psth: NWB file, folder, catalog or URL')
    p.add_argument('--output', '-o', required=True, help='PNG file')
    p.add_argument('--probe', help='probe: which probe of a session file')
    p.add_argument('--x', choices=('amplitude', 'firing_rate'), default='amplitude', help='probe: units against')
    _selection(p)
    _psth_options(p, required=False)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser('psth', help='spike counts and rates around a trial event, per unit, condition and bin')
    p.add_argument('source', help='NWB file, http(s) URL, dandiset folder or catalog .parquet')
    _selection(p)
    _psth_options(p, required=True)
    p.add_argument('--output', '-o', required=True, help='.parquet or .csv table (one row per unit, condition, bin)')
    p.set_defaults(func=cmd_psth)

    p = sub.add_parser('upload', help='dandi upload of a dandiset folder (needs DANDI_API_KEY)')
    p.add_argument('dandiset_dir')
    p.add_argument('--dandi-instance', default='dandi', help='dandi, dandi-sandbox, ...')
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser('info', help='probes, sorter, revision, histology, units and regions of an exported file')
    p.add_argument('file')
    p.add_argument('--json', action='store_true', help='print JSON')
    p.set_defaults(func=cmd_info)

    p = sub.add_parser('synth', help='write realistic synthetic IBL sessions as a standard ONE cache')
    p.add_argument('--cache-dir', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--sessions', type=int, default=1)
    p.add_argument('--units', type=int, default=40, help='clusters per probe (default sorting)')
    p.add_argument('--duration', type=float, default=300.0, help='recording length, s')
    p.add_argument('--raw', action='store_true',
                   help='also write the raw AP band (mtscomp .cbin/.ch/.meta, ~10 MB per probe and second of '
                        'recording: use a short --duration) and IBL\'s extracted waveforms (waveforms.*, by IBL\'s '
                        'extract_wfs_cbin: ~5 s per probe and second)')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('demo', help='synthesize a session, export it, and show the result')
    p.add_argument('--output', default='alfnwb-demo', help='folder for the cache and the NWB file')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--raw', action='store_true',
                   help=f'a {DEMO_RAW_SECONDS:g} s session whose probe00 has a raw AP band and IBL\'s extracted '
                        'waveforms (waveforms.*, by IBL\'s extract_wfs_cbin: a few minutes)')
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)
    return parser


#: Third-party warnings about their own code (not about the user's data), hidden unless --debug:
#: by category and module, never wholesale. alfnwb's own warnings are always shown.
THIRD_PARTY_NOISE = (
    (DeprecationWarning, r'(one|brainbox|ibllib|iblatlas|ibldsp|spikeinterface|probeinterface|hdmf|pynwb|numba|'
                         r'dask|distributed|pandas|pyarrow|h5py|nwbinspector|dandi)(\.|$)'),
    (FutureWarning, r'(one|brainbox|ibllib|iblatlas|ibldsp|spikeinterface|hdmf|pynwb|pandas)(\.|$)'),
)


def _warning_printer():
    """``warnings.showwarning`` for the command line: alfnwb's warnings as one line each, once; the
    others (those not filtered as third-party noise) as Python formats them."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (AlfNwbWarning, PerformanceWarning)):
            text = str(message)
            if text not in seen:
                seen.add(text)
                print(f'alfnwb: warning: {text}', file=sys.stderr, flush=True)
            return
        print(warnings.formatwarning(message, category, filename, lineno, line).rstrip(), file=sys.stderr,
              flush=True)
    return show


def _run(args, progress) -> int:
    """Run a command with alfnwb's warnings printed once each and third-party noise filtered."""
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer()
        warnings.simplefilter('always', AlfNwbWarning)  # the printer says each once
        if not args.debug:
            for category, module in THIRD_PARTY_NOISE:
                warnings.filterwarnings('ignore', category=category, module=module)
            logging.getLogger('ibllib').setLevel(logging.ERROR)
            logging.getLogger('one').setLevel(logging.ERROR)
        return args.func(args, progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``alfnwb`` command (``argv``: the arguments, default the command line)."""
    code = _main(argv)
    if argv is None:  # the process's own command line, not a call from Python: the process exits next
        import gc

        # the interpreter's last garbage collection walks every object of the libraries loaded
        # (~0.9 s after brainbox and pynwb); what the command opened is closed, so nothing of it waits
        # for that collection. atexit handlers and module teardown still run.
        gc.freeze()
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress(args.quiet)
    try:
        return _run(args, progress)
    except (AlfNwbError, AlfNwbWarning) as e:  # a warning is raised only with --strict
        if args.debug:
            raise
        print(f'alfnwb: error: {e}' + (' (--strict)' if isinstance(e, AlfNwbWarning) else ''), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print('alfnwb: interrupted', file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: still one line, traceback with --debug
        if args.debug:
            raise
        print(f'alfnwb: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)', file=sys.stderr)
        return 70


if __name__ == '__main__':
    sys.exit(main())
