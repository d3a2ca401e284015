"""Benchmark ``alfnwb export`` on one full-size IBL probe against the floor and the peer tool chain.

Synthesizes one probe (``--spikes`` spikes of ``--units`` clusters on ``--channels`` sites) into a
local ONE cache in ``--workdir`` (kept between runs, keyed by the parameters), then runs every
variant ``--repeat`` times, each run in a fresh process, measuring its wall time and peak RSS:

floor
    ``np.load`` of the ALF spike arrays + one bulk, uncompressed ``h5py`` write (``floor.py``).
core
    ``alfnwb --quiet export --pid PID --cache-dir CACHE -o OUT.nwb --extensions none``.
core_uncompressed
    the same with ``--compression none`` (what the default gzip filter costs).
default
    ``alfnwb --quiet export --pid PID --cache-dir CACHE -o OUT.nwb`` (default extensions).
peer
    SpikeInterface + neuroconv + ndx-spikesorting + pynwb on the same spikes (``peer_chain.py``).

Then ``alfnwb --help`` and ``alfnwb info FILE`` (fresh processes, ``--cli-repeat`` times), and with
``--batch`` the throughput of ``alfnwb batch`` with 1 and 2 local workers on several medium
insertions. Writes the raw numbers to JSON (``--json``, default: beside ``--output``) and the table
with the targets into ``--output`` (a Markdown file; only the part between its benchmark markers is
replaced, so hand-written sections survive).

    python benchmarks/export_full_probe.py --spikes 17.5e6 --units 1000 --channels 384 --repeat 3 \\
        --batch --output docs/performance.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

VARIANTS = ('floor', 'core', 'core_uncompressed', 'default', 'peer')
DESCRIPTIONS = {
    'floor': '`np.load` of spikes.times/clusters/amps/depths + one bulk uncompressed `h5py` write',
    'core': '`alfnwb export --extensions none` (units, electrodes, metrics; gzip per-spike data)',
    'core_uncompressed': '`alfnwb export --extensions none --compression none`',
    'default': '`alfnwb export` (default SortingAnalyzer extensions)',
    'peer': 'SpikeInterface + neuroconv `add_sorting_to_nwbfile` + SortingAnalyzer + ndx-spikesorting + pynwb',
}
#: Thresholds of the issue's targets, by key (see check_targets).
TARGETS = {
    'core_wall_vs_floor': 3.0,  # alfnwb core wall <= 3 x floor
    'core_rss_vs_alf_bytes': 2.5,  # alfnwb core peak RSS <= 2.5 x ALF spike array bytes
    'peer_wall_vs_default': 5.0,  # alfnwb default >= 5 x faster than peer
    'default_size_vs_peer': 1.0,  # alfnwb default file size <= peer's
    'help_s': 1.5,
    'info_s': 1.5,
    'batch_speedup_2_workers': 1.6,
}
PACKAGES = ('alfnwb', 'numpy', 'pandas', 'h5py', 'hdmf', 'pynwb', 'spikeinterface', 'probeinterface',
            'ndx-spikesorting', 'neuroconv', 'numba', 'ONE-api', 'ibllib', 'psutil')
BEGIN = '<!-- BEGIN benchmark results: written by benchmarks/export_full_probe.py, replaced at every run -->'
END = '<!-- END benchmark results -->'


def log(msg: str) -> None:
    print(f'[{datetime.datetime.now():%H:%M:%S}] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# measuring a child process
# ---------------------------------------------------------------------------------------------------

def _tree_rss_sampler(pid: int, stop: threading.Event, out: dict, interval: float = 0.1) -> None:
    """Poll the summed RSS of a process and its descendants (psutil), keep the maximum."""
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    peak = 0
    while not stop.is_set():
        try:
            procs = [root] + root.children(recursive=True)
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
        except psutil.Error:
            break
        stop.wait(interval)
    out['peak_tree_rss_sampled'] = peak


def measure(cmd: list[str], env: dict, log_dir: Path, name: str, timeout: float | None = None) -> dict:
    """Run ``cmd`` in a fresh process; its wall time, peak RSS (``wait4`` rusage), exit code, stdout.

    The peak RSS is the child's own ``ru_maxrss`` as the kernel reports it to ``wait4``: the
    maximum resident set of the child, or of any of its waited-for descendants (each on its own,
    not summed). ``peak_tree_rss_sampled`` is psutil's sampled sum over the process tree.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f'{name}.stdout', log_dir / f'{name}.stderr'
    sampled: dict = {}
    stop = threading.Event()
    with open(out_path, 'wb') as fo, open(err_path, 'wb') as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=str(log_dir))
        sampler = threading.Thread(target=_tree_rss_sampler, args=(proc.pid, stop, sampled), daemon=True)
        sampler.start()
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    stdout = out_path.read_text(errors='replace')
    result = {'wall_s': wall, 'peak_rss_bytes': int(rusage.ru_maxrss) * 1024, 'returncode': proc.returncode,
              'user_s': rusage.ru_utime, 'sys_s': rusage.ru_stime, **sampled}
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ''
    if last.startswith('{'):
        try:
            result.update(json.loads(last))
        except json.JSONDecodeError:
            pass
    if proc.returncode != 0:
        err = err_path.read_text(errors='replace').strip().splitlines()
        result['error'] = '\n'.join(err[-15:])
    return result


# ---------------------------------------------------------------------------------------------------
# machine and environment
# ---------------------------------------------------------------------------------------------------

def machine_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {'cores': os.cpu_count(), 'cores_usable': len(os.sched_getaffinity(0)),
            'python': platform.python_version(), 'platform': platform.platform(), 'packages': {}}
    try:
        import psutil

        info['ram_gb'] = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except ImportError:
        info['ram_gb'] = round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1)
    try:
        model = next(line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name'))
        info['cpu'] = model
    except (OSError, StopIteration):
        info['cpu'] = platform.processor()
    try:  # the alfnwb source measured: its commit and the files under src/ changed since
        git = ['git', '-C', str(HERE.parent)]
        info['alfnwb_git'] = {
            'commit': subprocess.run([*git, 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip(),
            'changed_src_files': subprocess.run([*git, 'status', '--porcelain', '--', 'src'], capture_output=True,
                                                text=True).stdout.split('\n')[:-1]}
    except OSError:
        pass
    for pkg in PACKAGES:
        try:
            info['packages'][pkg] = version(pkg)
        except PackageNotFoundError:
            info['packages'][pkg] = None
    return info


def git_state() -> str:
    """The alfnwb commit measured, with ``+dirty`` when files under src/ differ from it (others edit src)."""
    git = ['git', '-C', str(HERE.parent)]
    try:
        head = subprocess.run([*git, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, 'status', '--porcelain', '--', 'src'], capture_output=True, text=True).stdout
    except OSError:
        return ''
    return head + ('+dirty' if dirty.strip() else '')


def cpu_capacity(env: dict) -> dict:
    """How many cores this machine gives two CPU-bound processes right now (other jobs take the rest).

    A pure-Python loop alone (best of two), then two at once: ``capacity = 2 * alone / slower of the
    two`` (2.0 on two idle cores, ~1 when another job holds a core; noisy when the load changes).
    """
    code = 'import time\nt=time.perf_counter()\ns=0\nfor i in range(5_000_000): s+=i\nprint(time.perf_counter()-t)'
    cmd = [sys.executable, '-c', code]
    alone = min(float(subprocess.run(cmd, env=env, capture_output=True, text=True).stdout) for _ in range(2))
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = [float(p.communicate()[0]) for p in procs]
    return {'alone_s': round(alone, 3), 'two_s': [round(x, 3) for x in two],
            'capacity_cores': round(2 * alone / max(two), 2), 'loadavg': os.getloadavg()}


def alfnwb_command() -> list[str]:
    """The ``alfnwb`` console script of this interpreter (what a user runs), else ``python -m alfnwb.cli``."""
    exe = Path(sys.executable).parent / 'alfnwb'
    return [str(exe)] if exe.exists() else [sys.executable, '-m', 'alfnwb.cli']


def has_peer() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ('neuroconv', 'ndx_spikesorting', 'spikeinterface'))


# ---------------------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------------------

def variant_command(name: str, probe: dict, cache_dir: Path, out: Path) -> list[str]:
    alfnwb = alfnwb_command()
    export = [*alfnwb, '--quiet', 'export', '--pid', probe['pid'], '--cache-dir', str(cache_dir), '-o', str(out)]
    return {
        'floor': [sys.executable, str(HERE / 'floor.py'), probe['alf_dir'], str(out)],
        'core': [*export, '--extensions', 'none'],
        'core_uncompressed': [*export, '--extensions', 'none', '--compression', 'none'],
        'default': export,
        'peer': [sys.executable, str(HERE / 'peer_chain.py'), probe['alf_dir'], str(out)],
    }[name]


def output_name(name: str) -> str:
    return f'{name}.h5' if name == 'floor' else f'{name}.nwb'


def run_variants(variants, repeat, probe, cache_dir, run_dir, env, timeout) -> dict:
    results = {v: {'description': DESCRIPTIONS[v], 'runs': []} for v in variants}
    for r in range(repeat):
        for v in variants:  # interleaved: a slow drift of the machine's load touches every variant alike
            out = run_dir / 'outputs' / output_name(v)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            cmd = variant_command(v, probe, cache_dir, out)
            results[v]['command'] = ' '.join(cmd)
            log(f'repeat {r + 1}/{repeat}: {v}')
            git = git_state()
            res = measure(cmd, env, run_dir / 'logs', f'{v}-{r}', timeout=timeout)
            res['output_bytes'] = out.stat().st_size if out.exists() else 0
            res['alfnwb_git'] = git
            results[v]['runs'].append(res)
            log(f'  {v}: {res["wall_s"]:.1f} s, peak RSS {res["peak_rss_bytes"] / 1e9:.2f} GB, '
                f'{res["output_bytes"] / 1e6:.0f} MB, exit {res["returncode"]}'
                + (f'\n{res["error"]}' if res['returncode'] else ''))
    for v, d in results.items():
        ok = [x for x in d['runs'] if x['returncode'] == 0]
        d['ok'] = len(ok) == len(d['runs'])
        if ok:
            d['wall_s_median'] = statistics.median(x['wall_s'] for x in ok)
            d['peak_rss_bytes_max'] = max(x['peak_rss_bytes'] for x in ok)
            d['peak_rss_bytes_median'] = statistics.median(x['peak_rss_bytes'] for x in ok)
            d['output_bytes'] = ok[-1]['output_bytes']
            phases = [x['phases'] for x in ok if isinstance(x.get('phases'), dict)]
            if phases:
                d['phases_median_s'] = {k: statistics.median(p[k] for p in phases if k in p)
                                        for k in phases[0] if isinstance(phases[0][k], (int, float))}
    return results


def run_cli(n: int, default_output: Path | None, env, run_dir) -> dict:
    alfnwb = alfnwb_command()
    cmds = {'help': [*alfnwb, '--help']}
    if default_output is not None and default_output.exists():
        cmds['info'] = [*alfnwb, 'info', str(default_output)]
    out = {}
    for name, cmd in cmds.items():
        runs = [measure(cmd, env, run_dir / 'logs', f'cli-{name}-{i}') for i in range(n)]
        out[name] = {'command': ' '.join(cmd), 'runs': [{k: x[k] for k in ('wall_s', 'peak_rss_bytes', 'returncode')}
                                                         for x in runs],
                     'wall_s_median': statistics.median(x['wall_s'] for x in runs),
                     'ok': all(x['returncode'] == 0 for x in runs)}
        log(f'alfnwb {name}: median {out[name]["wall_s_median"]:.2f} s over {n}')
    return out


def synthesize(workdir: str, n_probes: int, spikes: float, units: int, channels: int, seed: int,
               env: dict) -> tuple[Path, list[dict], float]:
    """The synthetic cache for these parameters (reused from ``workdir`` when there), in a child process.

    Never in this process: a child's ``ru_maxrss`` starts from the peak RSS of the process that
    forked it (the kernel carries the pre-exec high-water mark over ``exec``), so this driver must
    stay small for the children's peak RSS to be their own.
    """
    cmd = [sys.executable, str(HERE / 'synth_probe.py'), '--workdir', workdir, '--spikes', str(int(spikes)),
           '--units', str(units), '--channels', str(channels), '--probes', str(n_probes), '--seed', str(seed),
           '--json']
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise RuntimeError(f'synthesis failed: {" ".join(cmd)}')
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return Path(d['cache_dir']), d['probes'], d['synth_s']


def job_durations(dandiset: Path, env: dict) -> list:
    """Seconds of each job, from the batch manifest (read in a child: this driver stays small)."""
    manifest = dandiset / '.alfnwb' / 'manifest.parquet'
    if not manifest.exists():
        return []
    code = ('import json, sys, pandas as pd; m = pd.read_parquet(sys.argv[1]); '
            'print(json.dumps([round(float(x), 2) for x in m["duration_s"]]))')
    r = subprocess.run([sys.executable, '-c', code, str(manifest)], env=env, capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else []


def run_phases(probe: dict, cache_dir: Path, run_dir: Path, env: dict) -> dict:
    """One instrumented run of alfnwb core and default (alfnwb_phases.py): time and RSS of each stage."""
    out = {}
    for name in ('core', 'default'):
        target = run_dir / 'outputs' / f'phases-{name}.nwb'
        target.unlink(missing_ok=True)
        cmd = variant_command(name, probe, cache_dir, target)
        cmd = [sys.executable, str(HERE / 'alfnwb_phases.py'), *cmd[cmd.index('--quiet'):]]
        log(f'stages of alfnwb {name} (instrumented run, not timed)')
        res = measure(cmd, env, run_dir / 'logs', f'phases-{name}')
        target.unlink(missing_ok=True)
        if res['returncode'] == 0 and 'steps' in res:
            out[name] = {'steps': res['steps'], 'total_s': res['total_s'], 'wall_s': res['wall_s'],
                         'peak_rss_bytes': res['peak_rss_bytes'], 'alfnwb_git': git_state()}
        else:
            out[name] = {'error': res.get('error', 'no output')}
    return out


def run_batch(args, env, run_dir) -> dict:
    cache_dir, records, synth_s = synthesize(args.workdir, args.batch_insertions, args.batch_spikes, args.batch_units,
                                             args.channels, args.seed + 1, env)
    pids_file = run_dir / 'batch_pids.txt'
    pids_file.write_text(''.join(r['pid'] + '\n' for r in records))
    out = {'insertions': len(records), 'spikes_per_insertion': int(args.batch_spikes), 'units': args.batch_units,
           'cache_dir': str(cache_dir), 'synth_s': synth_s, 'repeat': args.batch_repeat, 'workers': {},
           'cpu_capacity': cpu_capacity(env)}
    log(f'CPU capacity for 2 processes: {out["cpu_capacity"]["capacity_cores"]} cores')
    for r in range(args.batch_repeat):
        for workers in (1, 2):
            dandiset = run_dir / f'dandiset-w{workers}'
            shutil.rmtree(dandiset, ignore_errors=True)
            cmd = [*alfnwb_command(), '--quiet', 'batch', '--pids', str(pids_file), '--cache-dir', str(cache_dir),
                   '--dandiset-dir', str(dandiset), '--workers', str(workers), '--no-validate', '--extensions', 'none']
            log(f'batch repeat {r + 1}/{args.batch_repeat}: {workers} worker(s), {len(records)} insertions')
            res = measure(cmd, env, run_dir / 'logs', f'batch-w{workers}-{r}')
            res['files'] = len(list(dandiset.rglob('*.nwb')))
            res['job_s'] = job_durations(dandiset, env)
            res['alfnwb_git'] = git_state()
            d = out['workers'].setdefault(str(workers), {'command': ' '.join(cmd), 'runs': []})
            d['runs'].append({k: res.get(k) for k in ('wall_s', 'peak_rss_bytes', 'peak_tree_rss_sampled',
                                                      'returncode', 'files', 'job_s', 'alfnwb_git', 'error')
                              if k in res})
            log(f'  {workers} worker(s): {res["wall_s"]:.1f} s, {res["files"]} files, exit {res["returncode"]}'
                + (f'\n{res.get("error")}' if res['returncode'] else ''))
    for d in out['workers'].values():
        ok = [x for x in d['runs'] if x['returncode'] == 0 and x['files'] == len(records)]
        d['ok'] = len(ok) == len(d['runs'])
        if ok:
            d['wall_s_median'] = statistics.median(x['wall_s'] for x in ok)
            d['insertions_per_min'] = 60 * len(records) / d['wall_s_median']
    w1, w2 = out['workers'].get('1', {}), out['workers'].get('2', {})
    if w1.get('wall_s_median') and w2.get('wall_s_median'):
        out['speedup_2_workers'] = w1['wall_s_median'] / w2['wall_s_median']
    return out


# ---------------------------------------------------------------------------------------------------
# targets, JSON and Markdown
# ---------------------------------------------------------------------------------------------------

def check_targets(res: dict) -> list[dict]:
    v, alf_bytes = res['variants'], res['sizes']['alf_bytes']

    def med(name):
        return v.get(name, {}).get('wall_s_median')

    out = []

    def add(key, text, value, ok, unit=''):
        out.append({'key': key, 'target': text, 'value': value, 'unit': unit,
                    'met': None if value is None else bool(ok)})

    floor, core, default, peer = med('floor'), med('core'), med('default'), med('peer')
    ratio = core / floor if core and floor else None
    add('core_wall_vs_floor', f'alfnwb core wall time <= {TARGETS["core_wall_vs_floor"]:g} x the floor\'s', ratio,
        ratio is not None and ratio <= TARGETS['core_wall_vs_floor'], 'x floor')
    rss = v.get('core', {}).get('peak_rss_bytes_max')
    rss_ratio = rss / alf_bytes if rss else None
    add('core_rss_vs_alf_bytes', f'alfnwb core peak RSS <= {TARGETS["core_rss_vs_alf_bytes"]:g} x the ALF spike '
        'array bytes', rss_ratio, rss_ratio is not None and rss_ratio <= TARGETS['core_rss_vs_alf_bytes'],
        'x ALF bytes')
    speed = peer / default if peer and default else None
    add('peer_wall_vs_default', f'alfnwb default >= {TARGETS["peer_wall_vs_default"]:g} x faster than the peer '
        '(same extensions)', speed, speed is not None and speed >= TARGETS['peer_wall_vs_default'], 'x faster')
    size_d, size_p = v.get('default', {}).get('output_bytes'), v.get('peer', {}).get('output_bytes')
    size_ratio = size_d / size_p if size_d and size_p else None
    add('default_size_vs_peer', 'alfnwb default file size <= the peer\'s', size_ratio,
        size_ratio is not None and size_ratio <= TARGETS['default_size_vs_peer'], 'x peer size')
    for name in ('help', 'info'):
        t = res.get('cli', {}).get(name, {}).get('wall_s_median')
        cmd = 'alfnwb --help' if name == 'help' else 'alfnwb info FILE'
        add(f'{name}_s', f'`{cmd}` answers in < {TARGETS[f"{name}_s"]:g} s (median of {res["args"]["cli_repeat"]})',
            t, t is not None and t < TARGETS[f'{name}_s'], 's')
    if 'batch' in res:
        s = res['batch'].get('speedup_2_workers')
        add('batch_speedup_2_workers', f'batch with 2 local workers >= {TARGETS["batch_speedup_2_workers"]:g} x the '
            'throughput of 1 worker', s, s is not None and s >= TARGETS['batch_speedup_2_workers'], 'x')
    return out


def _fmt(x, spec='.2f'):
    return '-' if x is None else format(x, spec)


def markdown_block(res: dict) -> str:
    s, m, v = res['sizes'], res['machine'], res['variants']
    floor = v.get('floor', {}).get('wall_s_median')
    lines = [BEGIN, '', '## Results', '',
             f'Run of {res["finished"][:16].replace("T", " ")}: `{res["command"]}`', '',
             f'One synthetic probe: **{s["spikes"]:,} spikes**, {s["units"]} units, {s["channels"]} channels, '
             f'{s["duration_s"] / 60:.0f} min of recording; ALF spike arrays (times, clusters, amps, depths) '
             f'**{s["alf_bytes"] / 1e6:.0f} MB** ({s["alf_bytes_all_spikes"] / 1e6:.0f} MB with spikes.samples '
             f'and spikes.templates). Each run is a fresh process; wall time is the median of '
             f'{res["args"]["repeat"]} run(s), peak RSS the largest.', '',
             '| variant | wall s (median) | x floor | peak RSS GB | RSS / ALF bytes | output MB | runs ok |',
             '|---|---:|---:|---:|---:|---:|---|']
    for name, d in v.items():
        wall, rss = d.get('wall_s_median'), d.get('peak_rss_bytes_max')
        lines.append(f'| {name} | {_fmt(wall, ".1f")} | {_fmt(wall / floor if wall and floor else None, ".1f")} | '
                     f'{_fmt(rss / 1e9 if rss else None)} | {_fmt(rss / s["alf_bytes"] if rss else None, ".2f")} | '
                     f'{_fmt(d["output_bytes"] / 1e6 if d.get("output_bytes") else None, ".0f")} | '
                     f'{sum(x["returncode"] == 0 for x in d["runs"])}/{len(d["runs"])} |')
    lines += ['', 'Variants:', '']
    lines += [f'- **{name}**: {d["description"]}.' for name, d in v.items()]
    lines += ['', '### Targets', '', '| target | measured | met |', '|---|---:|---|']
    for t in res['targets']:
        met = 'n/a' if t['met'] is None else ('**met**' if t['met'] else '**missed**')
        lines.append(f'| {t["target"]} | {_fmt(t["value"])} {t["unit"]} | {met} |')
    cli = res.get('cli', {})
    if cli:
        shown = {'help': 'alfnwb --help', 'info': 'alfnwb info default.nwb'}
        lines += ['', 'Command line (fresh processes): ' + ', '.join(
            f'`{shown[name]}` {c["wall_s_median"]:.2f} s' for name, c in cli.items()) + ' (medians).']
    if 'batch' in res:
        b = res['batch']
        when = f' (measured {b["measured"][:16].replace("T", " ")}: `{b["command"]}`)' if b.get('measured') else ''
        lines += ['', '### Batch throughput', '',
                  f'`alfnwb batch --workers N --no-validate --extensions none`{when} on {b["insertions"]} '
                  'insertions of '
                  f'{b["spikes_per_insertion"]:,} spikes and {b["units"]} units each, a fresh dandiset folder per run '
                  f'(median of {b["repeat"]}):', '',
                  '| workers | wall s | insertions / min | seconds of each job (manifest), per run |',
                  '|---:|---:|---:|---|']
        for w, d in b['workers'].items():
            jobs = '; '.join(', '.join(f'{x:.1f}' for x in r.get('job_s', [])) for r in d['runs'])
            lines.append(f'| {w} | {_fmt(d.get("wall_s_median"), ".1f")} | {_fmt(d.get("insertions_per_min"), ".1f")} '
                         f'| {jobs} |')
        cap = b.get('cpu_capacity', {})
        lines += ['', f'Speed-up with 2 workers: {_fmt(b.get("speedup_2_workers"))} x. Just before, two CPU-bound '
                  f'processes got {_fmt(cap.get("capacity_cores"))} cores of the 2 (a pure-Python loop took '
                  f'{_fmt(cap.get("alone_s"))} s alone and {_fmt(max(cap["two_s"]) if cap.get("two_s") else None)} s '
                  'two at a time).']
    peer = v.get('peer', {}).get('phases_median_s')
    if peer:
        total = sum(peer.values())
        lines += ['', '### Where the peer spends its time', '',
                  'Seconds per phase inside the peer\'s process (`benchmarks/peer_chain.py`; median over runs; '
                  '`import` is the import of numpy, pandas, SpikeInterface, neuroconv, ndx-spikesorting and pynwb):',
                  '', '| phase | s | share |', '|---|---:|---:|']
        rest = max(v['peer']['wall_s_median'] - total, 0.0)
        rows = sorted(peer.items(), key=lambda kv: -kv[1]) + [('(interpreter start-up and exit)', rest)]
        for k, x in rows:
            lines.append(f'| {k} | {x:.1f} | {100 * x / (total + rest):.0f} % |')
    phases = res.get('alfnwb_phases', {})
    if any('steps' in p for p in phases.values()):
        lines += ['', '### Where alfnwb spends its time', '',
                  'One instrumented run of each (`benchmarks/alfnwb_phases.py`: timers around the export\'s stages, '
                  'RSS sampled every 20 ms; nested stages indented). Seconds, and the peak RSS reached by the end '
                  'of the stage:', '']
        names = [n for n in ('core', 'default') if 'steps' in phases.get(n, {})]
        for n in names:
            p = phases[n]
            lines += [f'**{n}** ({p["total_s"]:.1f} s in the process, {p["peak_rss_bytes"] / 1e9:.2f} GB peak, '
                      f'alfnwb {p.get("alfnwb_git", "")}):', '', '| stage | s | peak RSS GB |', '|---|---:|---:|']
            top = 0.0
            for label, depth, _, secs, _, peak in p['steps']:
                if depth == 0:
                    top += secs
                lines.append(f'| {"&nbsp;&nbsp;&nbsp;&nbsp;" * depth}{label} | {secs:.1f} | {peak:.2f} |')
            lines += [f'| (other: opening ONE, CLI, exit) | {max(p["total_s"] - top, 0):.1f} | |', '']
    cap0, cap1 = res.get('cpu_capacity_start'), res.get('cpu_capacity_end')
    lines += ['', '### Machine', '',
              f'{m["cores"]} cores ({m.get("cpu", "?")}), {m["ram_gb"]} GB RAM, Python {m["python"]}, '
              f'{m["platform"]}. Load average at start / end: {", ".join(f"{x:.1f}" for x in res["loadavg_start"])} / '
              f'{", ".join(f"{x:.1f}" for x in res["loadavg_end"])} (other jobs on the machine make timings noisy).'
              + (f' Cores two CPU-bound processes got at start / end: {_fmt(cap0["capacity_cores"])} / '
                 f'{_fmt(cap1["capacity_cores"])} of 2.' if cap0 and cap1 else '')
              + (' alfnwb measured: ' + ', '.join(sorted({x.get('alfnwb_git', '') for d in v.values()
                                                          for x in d['runs']}))
                 + ' (`+dirty`: files under src/ differed from the commit).' if v else ''),
              '', 'Packages: ' + ', '.join(f'{k} {x}' for k, x in m['packages'].items() if x) + '.', '',
              f'Raw numbers (every run, phases, commands): [{Path(res["json"]).name}]({Path(res["json"]).name}).',
              '', END]
    return '\n'.join(lines)


DOC_TEMPLATE = """# Performance

How long `alfnwb export` takes, and how much memory it needs, on one full-size IBL probe
(Neuropixels 1.0, 384 channels, ~1000 units, ~17.5 M spikes over ~45 min), against

- the **floor**: reading the probe's ALF spike arrays with `np.load` and writing them once,
  uncompressed, with `h5py`: what any exporter must at least do;
- the **peer**: the tool chain a user would assemble instead, on the same spikes: a SpikeInterface
  sorting (`NumpySorting.from_samples_and_labels`), neuroconv's `add_sorting_to_nwbfile`, an
  in-memory `SortingAnalyzer` with the extensions of `alfnwb export`'s default (those
  SpikeInterface computes without a recording computed by SpikeInterface: `random_spikes`,
  `correlograms`, `isi_histograms`, `template_similarity`; the others set from ALF as alfnwb
  does), `ndx_spikesorting.add_sorting_analyzer_to_nwbfile` and pynwb's `NWBHDF5IO`.

## How to rerun

```bash
pip install ".[benchmark]"   # neuroconv (the peer) and psutil; alfnwb itself does not need them
python benchmarks/export_full_probe.py --spikes 17.5e6 --units 1000 --channels 384 --repeat 3 \\
    --batch --output docs/performance.md
```

It takes ~20-30 min on 2 cores. The synthetic probe is written once into `--workdir` (default
`$TMPDIR/alfnwb-benchmark`: ~0.7 GB for the full probe, ~0.45 GB for the 4 medium insertions of
`--batch`) and reused by later runs with the same parameters. `--variants` picks variants,
`--repeat` the runs per variant; the raw numbers go to `docs/performance.json`. `--batch-only`
measures the batch throughput again into an existing JSON and document; `--from-json` only
re-renders the document. `tests/test_benchmark_smoke.py` runs it all on a tiny probe.

## How it is measured

- The probe is synthesized by `benchmarks/synth_probe.py` from `alfnwb.synthetic`'s building
  blocks: realistic Poisson trains (log-normal rates around 4 Hz, 2 ms dead time), IBL's ALF dtypes
  (`spikes.times` float64, `spikes.samples` int64, `spikes.clusters` uint32, `spikes.amps` float64,
  `spikes.depths` float32), templates on 32 channels, cluster metrics under IBL's names, `alf`
  histology, one `iblsorter` sorting at revision `2024-05-06`, and the ONE cache tables.
- Every run is a fresh process (`subprocess`), so wall times include interpreter start-up and
  imports, as a user sees them. Variants are interleaved across repeats.
- Peak RSS is the child's `ru_maxrss` as returned by `os.wait4` for that child alone (each child
  measured individually); psutil's sampled sum over the process tree is in the JSON too. The
  kernel carries the launcher's own high-water mark over `exec` into the child's `ru_maxrss`, so
  the driver synthesizes in a child process and stays small (its peak RSS is in the JSON,
  `driver_peak_rss_bytes`, far below any variant's).
- "ALF bytes" is the in-memory size of the four ALF spike arrays the floor moves (`spikes.times`,
  `spikes.clusters`, `spikes.amps`, `spikes.depths`: 24 bytes per spike).
- `alfnwb export` writes per-spike datasets with gzip by default; the floor and the peer (a plain
  `NWBHDF5IO` write) are uncompressed. `core_uncompressed` shows what the compression costs.
- After the timed runs, one instrumented run each of core and default (`benchmarks/alfnwb_phases.py`)
  shows where alfnwb spends its time and memory; the peer reports its own phases.
- `alfnwb --help` and `alfnwb info FILE` (on the default output) run in fresh processes, median of
  `--cli-repeat`. With `--batch`, `alfnwb batch --workers 1` and `--workers 2` export the same
  medium insertions into fresh dandiset folders (`--no-validate --extensions none`).
- The machine is shared: the load average and the cores that two CPU-bound processes actually get
  (a pure-Python loop alone, then two at once) are recorded at the start, before the batch and at
  the end, and every run records the alfnwb commit it measured.

""" + BEGIN + """
(no results yet)
""" + END + """

## Optimisations

_Placeholder: the optimisations behind these numbers are described here._
"""


def write_markdown(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else DOC_TEMPLATE
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    elif '## Optimisations' in text:
        head, tail = text.split('## Optimisations', 1)
        text = head + block + '\n\n## Optimisations' + tail
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--spikes', type=float, default=17.5e6, help='spikes of the probe')
    p.add_argument('--units', type=int, default=1000, help='clusters of the probe')
    p.add_argument('--channels', type=int, default=384, help='sites of the probe (NP1, at most 384)')
    p.add_argument('--repeat', type=int, default=3, help='runs per variant (median wall time)')
    p.add_argument('--cli-repeat', type=int, default=5, help='runs of alfnwb --help and alfnwb info')
    p.add_argument('--variants', default=','.join(VARIANTS), help='comma-separated, from ' + ', '.join(VARIANTS))
    p.add_argument('--workdir', default=str(Path(tempfile.gettempdir()) / 'alfnwb-benchmark'),
                   help='synthesized caches (kept, keyed by parameters) and the run\'s outputs')
    p.add_argument('--output', default=str(HERE.parent / 'docs' / 'performance.md'), help='Markdown report')
    p.add_argument('--json', help='raw numbers (default: --output with a .json suffix)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--timeout', type=float, default=3600.0, help='seconds before a run is killed')
    p.add_argument('--batch', action='store_true', help='also measure alfnwb batch with 1 and 2 workers')
    p.add_argument('--batch-insertions', type=int, default=4)
    p.add_argument('--batch-spikes', type=float, default=3e6, help='spikes per batch insertion')
    p.add_argument('--batch-units', type=int, default=400, help='units per batch insertion')
    p.add_argument('--batch-repeat', type=int, default=2)
    p.add_argument('--no-phases', action='store_true',
                   help='skip the instrumented runs showing where alfnwb spends its time')
    p.add_argument('--keep-outputs', action='store_true', help='keep the NWB files of the run in the workdir')
    p.add_argument('--from-json', metavar='JSON', help='only rewrite --output from the raw numbers of an earlier run')
    p.add_argument('--batch-only', action='store_true',
                   help='only (re)measure the batch throughput: replaces the batch numbers of the existing --json '
                        'and rewrites --output')
    return p.parse_args(argv)


def batch_only(args) -> int:
    """Measure the batch throughput again and put it into an earlier run's JSON and Markdown."""
    output = Path(args.output).resolve()
    json_path = Path(args.json).resolve() if args.json else output.with_suffix('.json')
    res = json.loads(json_path.read_text())
    workdir = Path(args.workdir).resolve()
    args.workdir = str(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix='home-', dir=workdir))
    os.environ['HOME'] = str(home)
    run_dir = Path(tempfile.mkdtemp(prefix='run-', dir=workdir))
    try:
        res['batch'] = run_batch(args, dict(os.environ), run_dir)
        res['batch']['measured'] = datetime.datetime.now().isoformat(timespec='seconds')
        res['batch']['command'] = 'python benchmarks/export_full_probe.py ' + ' '.join(sys.argv[1:])
        res['targets'] = check_targets(res)
        json_path.write_text(json.dumps(res, indent=1, default=str) + '\n')
        write_markdown(output, markdown_block(res))
        log(f'wrote the batch numbers into {output} and {json_path}')
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)
        for d in run_dir.glob('dandiset-w*'):
            shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        res['targets'] = check_targets(res)
        write_markdown(Path(args.output), markdown_block(res))
        log(f'wrote {args.output} from {args.from_json}')
        return 0
    if args.batch_only:
        return batch_only(args)
    variants = [x.strip() for x in args.variants.split(',') if x.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f'unknown variant(s): {", ".join(sorted(unknown))}')
    if 'peer' in variants and not has_peer():
        log('neuroconv / ndx-spikesorting not installed (pip install ".[benchmark]"): the peer is skipped')
        variants.remove('peer')
    workdir = Path(args.workdir).resolve()
    args.workdir = str(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    output = Path(args.output).resolve()
    json_path = Path(args.json).resolve() if args.json else output.with_suffix('.json')
    # ONE writes to ~/.one: every process of the benchmark (this one included) gets a throw-away HOME
    home = Path(tempfile.mkdtemp(prefix='home-', dir=workdir))
    os.environ['HOME'] = str(home)
    env = dict(os.environ)
    run_dir = Path(tempfile.mkdtemp(prefix='run-', dir=workdir))
    started = datetime.datetime.now().isoformat(timespec='seconds')
    loadavg_start = os.getloadavg()
    capacity_start = cpu_capacity(dict(os.environ))
    log(f'CPU capacity for 2 processes: {capacity_start["capacity_cores"]} cores')
    try:
        cache_dir, records, synth_s = synthesize(str(workdir), 1, args.spikes, args.units, args.channels, args.seed,
                                                 env)
        probe = records[0]
        log(f'probe {probe["pid"]}: {probe["spikes"]:,} spikes, {probe["units"]} units, '
            f'{probe["duration_s"]:.0f} s ({"synthesized in %.0f s" % synth_s if synth_s else "cached"})')
        res = {'command': 'python benchmarks/export_full_probe.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
               'started': started, 'args': vars(args), 'json': str(json_path),
               'machine': machine_info(),
               'sizes': {k: probe[k] for k in ('spikes', 'units', 'channels', 'duration_s', 'alf_bytes',
                                               'alf_bytes_all_spikes', 'pid')}
               | {'cache_dir': str(cache_dir), 'synth_s': synth_s}}
        res['variants'] = run_variants(variants, args.repeat, probe, cache_dir, run_dir, env, args.timeout)
        default_out = run_dir / 'outputs' / output_name('default') if 'default' in variants else None
        if default_out is None or not default_out.exists():
            default_out = run_dir / 'outputs' / output_name('core')
        res['cli'] = run_cli(args.cli_repeat, default_out, env, run_dir)
        if not args.no_phases and {'core', 'default'} <= set(variants):
            res['alfnwb_phases'] = run_phases(probe, cache_dir, run_dir, env)
        if args.batch:
            res['batch'] = run_batch(args, env, run_dir)
        res['loadavg_start'], res['loadavg_end'] = loadavg_start, os.getloadavg()
        res['cpu_capacity_start'], res['cpu_capacity_end'] = capacity_start, cpu_capacity(env)
        # bounds what the children inherit in their ru_maxrss (see synthesize)
        res['driver_peak_rss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        res['finished'] = datetime.datetime.now().isoformat(timespec='seconds')
        res['targets'] = check_targets(res)
        res['outputs_dir'] = str(run_dir / 'outputs') if args.keep_outputs else None
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=1, default=str) + '\n')
        write_markdown(output, markdown_block(res))
        log(f'wrote {output} and {json_path}')
        for t in res['targets']:
            log(f'  {"MET   " if t["met"] else "MISSED" if t["met"] is False else "n/a   "} {t["target"]}: '
                f'{_fmt(t["value"])} {t["unit"]}')
        failed = [v for v, d in res['variants'].items() if not d['ok']]
        if failed:
            log(f'variants that failed: {", ".join(failed)} (see {run_dir / "logs"})')
        return 1 if failed else 0
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if not args.keep_outputs:
            shutil.rmtree(run_dir / 'outputs', ignore_errors=True)
            for d in run_dir.glob('dandiset-w*'):
                shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
