"""Benchmark ``alfnwb export`` on full-size IBL probes against the floors and the peer tool chain.

Synthesizes one probe per size (``--sizes SPIKESxUNITS,...`` on ``--channels`` sites; default
``--spikes`` x ``--units``) into a local ONE cache in ``--workdir`` (kept between runs, keyed by the
parameters). The first size runs every variant ``--repeat`` times, each further size the floors,
core and default ``--extra-size-repeat`` times; each run is a fresh process, measured for its wall
time and peak RSS:

floor
    ``np.load`` of the ALF spike arrays + one bulk, uncompressed ``h5py`` write (``floor.py``).
floor_imports
    the same after importing ``one.api``, ``brainbox.io.one``, ``pynwb`` and ``spikeinterface.core``
    (``floor.py --with-imports``): the import-inclusive floor.
core
    ``alfnwb --quiet export --pid PID --cache-dir CACHE -o OUT.nwb --extensions none``.
core_uncompressed
    the same with ``--compression none`` (what the default gzip filter costs).
default
    ``alfnwb --quiet export --pid PID --cache-dir CACHE -o OUT.nwb`` (default extensions).
peer
    SpikeInterface + neuroconv + ndx-spikesorting + pynwb on the same spikes (``peer_chain.py``).

Then, in fresh processes, ``--cli-repeat`` times each: the import floor (``python -c "import
one.api, brainbox.io.one, pynwb, spikeinterface.core"``), the small export (``alfnwb export`` of
the demo session's probe00, the fixed cost) and ``alfnwb demo`` end to end, interleaved; then
``alfnwb --help`` and ``alfnwb info FILE``. With ``--batch``, the throughput of ``alfnwb batch``
with 1 and 2 local workers, of ``run_batch`` on a Dask ``LocalCluster`` of 2 workers
(``dask_batch.py``) and of two 1-worker batches at once (the machine's ceiling) on several medium
insertions, whole runs and steady state. Writes the raw numbers to JSON (``--json``, default: beside ``--output``) and the
tables with the targets into ``--output`` (a Markdown file; the part after its benchmark markers is
kept, so hand-written sections survive).

    python benchmarks/export_full_probe.py --sizes 17.5e6x1000,60e6x2000 --channels 384 --repeat 2 \\
        --cli-repeat 5 --batch --batch-repeat 3 --output docs/performance.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

VARIANTS = ('floor', 'floor_imports', 'core', 'core_uncompressed', 'default', 'peer')
#: What every size after the first runs (the first runs --variants).
EXTRA_SIZE_VARIANTS = ('floor', 'floor_imports', 'core', 'default')
#: The import floor: what any export from ONE to NWB must import (as floor.py --with-imports).
IMPORTS = 'import one.api, brainbox.io.one, pynwb, spikeinterface.core'
DESCRIPTIONS = {
    'floor': '`np.load` of spikes.times/clusters/amps/depths + one bulk uncompressed `h5py` write',
    'floor_imports': 'the floor after `import one.api, brainbox.io.one, pynwb, spikeinterface.core`',
    'core': '`alfnwb export --extensions none` (units, electrodes, metrics; gzip per-spike data)',
    'core_uncompressed': '`alfnwb export --extensions none --compression none`',
    'default': '`alfnwb export` (default SortingAnalyzer extensions)',
    'peer': 'SpikeInterface + neuroconv `add_sorting_to_nwbfile` + SortingAnalyzer + ndx-spikesorting + pynwb',
}
#: Thresholds of issue 15's targets, by key (see check_targets); measured and reported, never asserted.
TARGETS = {
    'small_export_vs_import_floor': 2.0,  # small export wall <= 2 x the import floor
    'demo_s': 10.0,  # alfnwb demo end to end < 10 s
    'core_wall_vs_floor_imports': 2.0,  # full-size core wall <= 2 x the import-inclusive floor
    'rss_vs_alf_bytes': 2.5,  # core and default peak RSS <= 2.5 x ALF spike array bytes, at each size
    'batch_speedup_2_workers': 1.8,  # alfnwb batch --workers 2 >= 1.8 x the throughput of 1 worker
    'dask_speedup_2_workers': 1.8,  # run_batch on 2 Dask workers >= 1.8 x 1 local worker
    'peer_wall_vs_default': 5.0,  # alfnwb default >= 5 x faster than peer
    'default_size_vs_peer': 1.0,  # alfnwb default file size <= peer's
    'help_s': 1.5,
    'info_s': 1.5,
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

def _pss(proc) -> int:
    """Proportional set size of a process, bytes (Linux ``smaps_rollup``; psutil's full scan elsewhere)."""
    try:
        with open(f'/proc/{proc.pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    m = proc.memory_full_info()
    return getattr(m, 'pss', m.rss)


def _tree_rss_sampler(pid: int, stop: threading.Event, out: dict, interval: float = 0.1) -> None:
    """Poll a process and its descendants (psutil): keep the maxima of their summed RSS and summed PSS.

    An export writes its file in a forked child that shares the parent's pages: summed RSS counts
    those pages twice, PSS (each shared page split between the processes mapping it) once, so the
    summed PSS is the memory the processes hold together. PSS is read only while there is more
    than one process (alone, a process's own ``ru_maxrss`` is exact), and then no more than 5 %
    of the time: the kernel walks the page tables to count it (~20 ms a GB), a core's time this
    sampler would otherwise take from the measured run.
    """
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    peak_rss = peak_pss = 0
    while not stop.is_set():
        wait = interval
        try:
            procs = [root] + root.children(recursive=True)
            t = time.perf_counter()
            rss = pss = 0
            for p in procs:
                try:
                    r = p.memory_info().rss
                    rss, pss = rss + r, pss + (_pss(p) if len(procs) > 1 else r)
                except psutil.Error:
                    pass
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            wait = max(interval, 20 * (time.perf_counter() - t))
        except psutil.Error:
            break
        stop.wait(wait)
    out['peak_tree_rss_sampled'] = peak_rss
    out['peak_tree_pss_sampled'] = peak_pss


def measure(cmd: list[str], env: dict, log_dir: Path, name: str, timeout: float | None = None) -> dict:
    """Run ``cmd`` in a fresh process; its wall time, peak RSS, exit code, stdout.

    ``peak_rss_bytes`` is the memory the process and its descendants hold together at their peak:
    the larger of ``ru_maxrss_bytes`` (what the kernel reports to ``wait4``: the largest resident
    set of the child or of any one of its waited-for descendants, not their sum) and
    ``peak_tree_pss_sampled`` (the sampled peak of their summed PSS, see :func:`_tree_rss_sampler`).
    The first alone misses an export's forked writer, whose own pages come on top of its parent's.
    ``peak_tree_rss_sampled`` (summed RSS, shared pages counted in each process) is kept as well.
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
    maxrss = int(rusage.ru_maxrss) * 1024
    result = {'wall_s': wall, 'peak_rss_bytes': max(maxrss, sampled.get('peak_tree_pss_sampled', 0)),
              'ru_maxrss_bytes': maxrss, 'returncode': proc.returncode, 'user_s': rusage.ru_utime,
              'sys_s': rusage.ru_stime, **sampled}
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
    floor = [sys.executable, str(HERE / 'floor.py')]
    return {
        'floor': [*floor, probe['alf_dir'], str(out)],
        'floor_imports': [*floor, '--with-imports', probe['alf_dir'], str(out)],
        'core': [*export, '--extensions', 'none'],
        'core_uncompressed': [*export, '--extensions', 'none', '--compression', 'none'],
        'default': export,
        'peer': [sys.executable, str(HERE / 'peer_chain.py'), probe['alf_dir'], str(out)],
    }[name]


def output_name(name: str) -> str:
    return f'{name}.h5' if name.startswith('floor') else f'{name}.nwb'


def run_variants(variants, repeat, probe, cache_dir, run_dir, env, timeout, label: str = '') -> dict:
    """Each variant ``repeat`` times on one probe, interleaved; the runs and their summary, by variant.

    ``label`` names the size (a folder of outputs and a prefix of the logs) after the first size.
    """
    results = {v: {'description': DESCRIPTIONS[v], 'runs': []} for v in variants}
    out_dir = run_dir / 'outputs' / label if label else run_dir / 'outputs'
    prefix = f'{label}-' if label else ''
    for r in range(repeat):
        for v in variants:  # interleaved: a slow drift of the machine's load touches every variant alike
            out = out_dir / output_name(v)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            cmd = variant_command(v, probe, cache_dir, out)
            results[v]['command'] = ' '.join(cmd)
            log(f'{prefix}repeat {r + 1}/{repeat}: {v}')
            git = git_state()
            res = measure(cmd, env, run_dir / 'logs', f'{prefix}{v}-{r}', timeout=timeout)
            res['output_bytes'] = out.stat().st_size if out.exists() else 0
            res['alfnwb_git'] = git
            results[v]['runs'].append(res)
            log(f'  {v}: {res["wall_s"]:.1f} s, peak RSS {res["peak_rss_bytes"] / 1e9:.2f} GB, '
                f'{res["output_bytes"] / 1e6:.0f} MB, exit {res["returncode"]}'
                + (f'\n{res["error"]}' if res['returncode'] else ''))
    for d in results.values():
        _summarize_variant(d)
    return results


def _summarize_variant(d: dict) -> None:
    """Median wall time, peak RSS (max and median), output size and median phases of the runs that exited 0."""
    ok = [x for x in d['runs'] if x['returncode'] == 0]
    d['ok'] = len(ok) == len(d['runs'])
    if not ok:
        return
    d['wall_s_median'] = statistics.median(x['wall_s'] for x in ok)
    d['peak_rss_bytes_max'] = max(x['peak_rss_bytes'] for x in ok)
    d['peak_rss_bytes_median'] = statistics.median(x['peak_rss_bytes'] for x in ok)
    d['output_bytes'] = ok[-1]['output_bytes']
    phases = [x['phases'] for x in ok if isinstance(x.get('phases'), dict)]
    if phases:
        d['phases_median_s'] = {k: statistics.median(p[k] for p in phases if k in p)
                                for k in phases[0] if isinstance(phases[0][k], (int, float))}


def run_repeated(cmds: dict, n: int, env: dict, run_dir: Path, prefix: str, before=None) -> dict:
    """Each command ``n`` times in fresh processes, interleaved: median wall time, every run.

    ``before(name)``, if given, runs before each run (e.g. to remove what the previous one wrote).
    """
    runs: dict = {name: [] for name in cmds}
    for i in range(n):
        for name, cmd in cmds.items():
            if before is not None:
                before(name)
            res = measure(cmd, env, run_dir / 'logs', f'{prefix}{name}-{i}')
            runs[name].append({k: res[k] for k in ('wall_s', 'peak_rss_bytes', 'returncode', 'error') if k in res})
            if res['returncode']:
                log(f'  {prefix}{name} failed (exit {res["returncode"]}):\n{res.get("error", "")}')
    out = {}
    for name, cmd in cmds.items():
        ok = [x for x in runs[name] if x['returncode'] == 0]
        out[name] = {'command': ' '.join(cmd), 'runs': runs[name], 'ok': len(ok) == n,
                     'wall_s_median': statistics.median(x['wall_s'] for x in ok) if ok else None,
                     'peak_rss_bytes_max': max(x['peak_rss_bytes'] for x in ok) if ok else None}
        log(f'{prefix}{name}: median {_fmt(out[name]["wall_s_median"])} s over {len(ok)}/{n}')
    return out


def run_cli(n: int, default_output: Path | None, env, run_dir) -> dict:
    """``alfnwb --help`` and ``alfnwb info FILE`` (on the default output, if written)."""
    alfnwb = alfnwb_command()
    cmds = {'help': [*alfnwb, '--help']}
    if default_output is not None and default_output.exists():
        cmds['info'] = [*alfnwb, 'info', str(default_output)]
    return run_repeated(cmds, n, env, run_dir, 'cli-')


def run_small(n: int, env: dict, run_dir: Path) -> dict:
    """The fixed cost: the import floor (``imports``: a fresh interpreter importing what any export
    from ONE to NWB needs), ``alfnwb export`` of the demo session's probe00 and ``alfnwb demo`` end
    to end, interleaved (the small export is compared with the floor measured beside it).

    The demo's cache is synthesized once in a child (``write_cache(DIR, seed=0, sessions=1)``, what
    ``alfnwb demo`` writes with its default seed), which prints the probe's pid.
    """
    cache_dir, demo_dir, out = run_dir / 'small-cache', run_dir / 'small-demo', run_dir / 'outputs' / 'small.nwb'
    code = ('import json, sys; from alfnwb.synthetic import write_cache; '
            'c = write_cache(sys.argv[1], seed=0, sessions=1); s = c.sessions[0]; '
            'print(json.dumps({"eid": s.eid, "pid": s.probes[0].pid, "probe": s.probes[0].name}))')
    t = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', code, str(cache_dir)], env=env, stdout=subprocess.PIPE, text=True)
    if r.returncode:
        return {'error': 'synthesizing the demo session failed'}
    small = json.loads(r.stdout.strip().splitlines()[-1]) | {'synth_s': time.perf_counter() - t,
                                                             'cache_dir': str(cache_dir)}
    out.parent.mkdir(parents=True, exist_ok=True)
    alfnwb = alfnwb_command()
    cmds = {'imports': [sys.executable, '-c', IMPORTS],
            'export': [*alfnwb, '--quiet', 'export', '--pid', small['pid'], '--cache-dir', str(cache_dir),
                       '-o', str(out), '--overwrite'],
            'demo': [*alfnwb, '--quiet', 'demo', '--output', str(demo_dir)]}

    def before(name: str) -> None:
        if name == 'demo':
            shutil.rmtree(demo_dir, ignore_errors=True)

    small.update(run_repeated(cmds, n, env, run_dir, 'small-', before=before))
    small['export']['output_bytes'] = out.stat().st_size if out.exists() else 0
    small['demo']['files'] = len(list(demo_dir.glob('*.nwb')))
    shutil.rmtree(demo_dir, ignore_errors=True)
    return small


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
    # os._exit: pyarrow's threads sometimes abort the interpreter's exit ("terminate called without an
    # active exception", exit -6), after the answer is printed
    code = ('import json, os, sys, pandas as pd; m = pd.read_parquet(sys.argv[1]); '
            'print(json.dumps([round(float(x), 2) for x in m["duration_s"]]), flush=True); os._exit(0)')
    for _ in range(2):  # once it came back empty, without a trace (run of 2026-11-27 03:43): say why, retry once
        r = subprocess.run([sys.executable, '-c', code, str(manifest)], env=env, capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout)
        log(f'  reading {manifest} failed (exit {r.returncode}): {r.stderr.strip()[-500:]}')
    return []


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


def parse_sizes(text: str | None, spikes: float, units: int) -> list[tuple[int, int]]:
    """``--sizes 17.5e6x1000,60e6x2000`` as (spikes, units) pairs; ``--spikes`` x ``--units`` if not given."""
    if not text:
        return [(int(spikes), units)]
    out = []
    for item in text.split(','):
        s, _, u = item.strip().lower().partition('x')
        try:
            out.append((int(float(s)), int(float(u))))
        except ValueError:
            sys.exit(f'--sizes: {item!r} is not SPIKESxUNITS (e.g. 17.5e6x1000)')
    return out


def size_record(probe: dict, cache_dir: Path, synth_s: float) -> dict:
    """What the JSON keeps of a synthesized probe (its ``sizes``)."""
    # what an export loads: the four arrays and spikes.samples (int64); probes synthesized before it was recorded
    loaded = probe.get('alf_bytes_loaded', probe['alf_bytes'] + 8 * probe['spikes'])
    return {k: probe[k] for k in ('spikes', 'units', 'channels', 'duration_s', 'alf_bytes', 'alf_bytes_all_spikes',
                                  'pid')} | {'alf_bytes_loaded': loaded, 'cache_dir': str(cache_dir), 'synth_s': synth_s}


def run_extra_sizes(args, sizes, env: dict, run_dir: Path) -> list[dict]:
    """Every size after the first: synthesized once (cached), the floors, core and default."""
    out = []
    for spikes, units in sizes:
        cache_dir, records, synth_s = synthesize(args.workdir, 1, spikes, units, args.channels, args.seed, env)
        label = f'{spikes}x{units}'
        log(f'size {label}: {"synthesized in %.0f s" % synth_s if synth_s else "cached"}')
        variants = run_variants(EXTRA_SIZE_VARIANTS, args.extra_size_repeat, records[0], cache_dir, run_dir, env,
                                args.timeout, label=label)
        out.append({'sizes': size_record(records[0], cache_dir, synth_s), 'repeat': args.extra_size_repeat,
                    'variants': variants})
    return out


def run_batch(args, env, run_dir) -> dict:
    """``alfnwb batch`` with 1 and 2 local workers and ``run_batch`` on 2 Dask workers, interleaved."""
    cache_dir, records, synth_s = synthesize(args.workdir, args.batch_insertions, args.batch_spikes, args.batch_units,
                                             args.channels, args.seed + 1, env)
    pids_file = run_dir / 'batch_pids.txt'
    pids_file.write_text(''.join(r['pid'] + '\n' for r in records))
    out = {'insertions': len(records), 'spikes_per_insertion': int(args.batch_spikes), 'units': args.batch_units,
           'cache_dir': str(cache_dir), 'synth_s': synth_s, 'repeat': args.batch_repeat, 'workers': {},
           'cpu_capacity': cpu_capacity(env)}
    log(f'CPU capacity for 2 processes: {out["cpu_capacity"]["capacity_cores"]} cores')
    for r in range(args.batch_repeat):
        for mode in [m for m in BATCH_MODES if m in args.batch_modes.split(',')]:
            dandisets = _batch_dandisets(run_dir, mode)
            for d in dandisets:
                shutil.rmtree(d, ignore_errors=True)
            cmd = batch_command(mode, cache_dir, pids_file, dandisets)
            log(f'batch repeat {r + 1}/{args.batch_repeat}: {mode}, {len(records)} insertions')
            res = measure(cmd, env, run_dir / 'logs', f'batch-{mode}-{r}')
            res['files'] = sum(len(list(d.rglob('*.nwb'))) for d in dandisets)
            res['job_s'] = [x for d in dandisets for x in job_durations(d, env)]
            if 'batch_s' not in res:
                seconds = [_report_duration(d) for d in dandisets]
                res['batch_s'] = None if None in seconds else max(seconds)
            res['alfnwb_git'] = git_state()
            d = out['workers'].setdefault(mode, {'command': ' '.join(cmd), 'runs': []})
            d['runs'].append({k: res[k] for k in ('wall_s', 'batch_s', 'cluster_start_s', 'profiling_workers',
                                                  'peak_rss_bytes', 'peak_tree_rss_sampled', 'returncode', 'files',
                                                  'job_s', 'alfnwb_git', 'error') if k in res})
            log(f'  {mode}: {res["wall_s"]:.1f} s (run_batch {_fmt(res.get("batch_s"), ".1f")} s), '
                f'{res["files"]} files, exit {res["returncode"]}'
                + (f'\n{res.get("error")}' if res['returncode'] else ''))
    _summarize_batch(out, len(records))
    return out


#: The batch runs: alfnwb batch --workers 1 and 2 (keys '1', '2', as in earlier JSON), Dask (its workers
#: configured as docs/publish.md advises, alfnwb.batch.DASK_WORKER_CONFIG; 'dask2-profiled': Dask's own
#: configuration, the profiler on), and 'pair':
#: two ``alfnwb batch --workers 1`` processes at once, each on half of the insertions. They share
#: nothing but the machine: their throughput is what 2 cores give this workload, the ceiling of the others.
BATCH_MODES = ('1', '2', 'dask2', 'dask2-profiled', 'pair')


def _batch_dandisets(run_dir: Path, mode: str) -> list[Path]:
    return [run_dir / f'dandiset-pair-{i}' for i in range(2)] if mode == 'pair' else [run_dir / f'dandiset-{mode}']


def batch_command(mode: str, cache_dir: Path, pids_file: Path, dandisets: list[Path]) -> list[str]:
    """The command of a batch run: the CLI with 1 or 2 local workers, ``dask_batch.py`` (2 workers), or
    (``pair``) a shell starting two CLI batches of 1 worker at once, on the two halves of the pids."""
    if mode in ('dask2', 'dask2-profiled'):
        defaults = ['--dask-defaults'] if mode == 'dask2-profiled' else []
        return [sys.executable, str(HERE / 'dask_batch.py'), '--cache-dir', str(cache_dir), '--pids', str(pids_file),
                '--dandiset-dir', str(dandisets[0]), '--workers', '2', *defaults]
    if mode == 'pair':
        pids = pids_file.read_text().split()
        halves = []
        for i, dandiset in enumerate(dandisets):
            half = pids_file.with_name(f'{pids_file.stem}-half{i}.txt')
            half.write_text(''.join(p + '\n' for p in pids[i::2]))
            halves.append(shlex.join(_cli_batch(cache_dir, half, dandiset, '1')))
        # both exit codes count: the second wait's alone would hide a failure of the first
        return ['sh', '-c', f'{halves[0]} & a=$!; {halves[1]} & b=$!; wait $a; x=$?; wait $b; y=$?; '
                'exit $((x > y ? x : y))']
    return _cli_batch(cache_dir, pids_file, dandisets[0], mode)


def _cli_batch(cache_dir: Path, pids_file: Path, dandiset: Path, workers: str) -> list[str]:
    return [*alfnwb_command(), '--quiet', 'batch', '--pids', str(pids_file), '--cache-dir', str(cache_dir),
            '--dandiset-dir', str(dandiset), '--workers', workers, '--no-validate', '--extensions', 'none']


def _report_duration(dandiset: Path) -> float | None:
    """The seconds ``run_batch`` itself took (its ``report.json``): the CLI's wall time without start-up."""
    try:
        return float(json.loads((dandiset / '.alfnwb' / 'report.json').read_text())['duration_s'])
    except (OSError, ValueError, KeyError):
        return None


#: Exports running at once in each batch run (its workers).
BATCH_CONCURRENCY = {'1': 1, '2': 2, 'dask2': 2, 'dask2-profiled': 2, 'pair': 2}


def _summarize_batch(out: dict, n: int) -> None:
    """Medians of the complete runs, and the speed-ups over 1 worker.

    Steady state (the issue's measure): a run's workers each finish a job every median job
    duration (the manifests' ``duration_s``, over all the runs of a mode), so its throughput is
    ``workers / median``; the start-up (each worker's first imports, the cluster's start) is left
    out. Also shown: 2 local workers and the pair against 1 on the processes' wall times (what a
    user of ``alfnwb batch`` waits), Dask against 1 local worker on ``run_batch``'s own seconds.
    """
    for mode, d in out['workers'].items():
        ok = [x for x in d['runs'] if x['returncode'] == 0 and x['files'] == n]
        d['ok'] = len(ok) == len(d['runs'])
        if ok:
            d['wall_s_median'] = statistics.median(x['wall_s'] for x in ok)
            d['insertions_per_min'] = 60 * n / d['wall_s_median']
            steady = [x['batch_s'] for x in ok if x.get('batch_s')]
            d['batch_s_median'] = statistics.median(steady) if steady else None
            start = [x['cluster_start_s'] for x in ok if x.get('cluster_start_s') is not None]
            if start:
                d['cluster_start_s_median'] = statistics.median(start)
            jobs = [j for x in ok for j in x.get('job_s', [])]
            if jobs:
                d['job_s_median'] = statistics.median(jobs)
                d['steady_insertions_per_min'] = 60 * BATCH_CONCURRENCY.get(mode, 1) / d['job_s_median']
    w1, w2, dask, profiled, pair = (out['workers'].get(m, {}) for m in BATCH_MODES)
    if w1.get('wall_s_median') and w2.get('wall_s_median'):
        out['speedup_2_workers'] = w1['wall_s_median'] / w2['wall_s_median']
    if w1.get('batch_s_median') and dask.get('batch_s_median'):
        out['speedup_dask_2_workers'] = w1['batch_s_median'] / dask['batch_s_median']
    if w1.get('wall_s_median') and pair.get('wall_s_median'):
        out['speedup_pair'] = w1['wall_s_median'] / pair['wall_s_median']
    for key, d in (('2_workers', w2), ('dask_2_workers', dask), ('dask_2_workers_profiled', profiled), ('pair', pair)):
        if w1.get('steady_insertions_per_min') and d.get('steady_insertions_per_min'):
            out[f'steady_speedup_{key}'] = d['steady_insertions_per_min'] / w1['steady_insertions_per_min']


# ---------------------------------------------------------------------------------------------------
# targets, JSON and Markdown
# ---------------------------------------------------------------------------------------------------

def all_sizes(res: dict) -> list[dict]:
    """Every size measured: ``{'sizes', 'variants', 'repeat'}``, the first size first (its variants: ``--variants``)."""
    first = {'sizes': res['sizes'], 'variants': res.get('variants', {}), 'repeat': res['args'].get('repeat')}
    return [first, *res.get('extra_sizes', [])]


def _size_label(s: dict) -> str:
    return f'{s["spikes"] / 1e6:g} M spikes x {s["units"]} units'


def check_targets(res: dict) -> list[dict]:
    """Issue 15's targets, each with its measured ratio; one whose measurement is missing is not met."""
    out = []

    def add(key, text, value, ok, unit=''):
        out.append({'key': key, 'target': text, 'value': value, 'unit': unit, 'measured': value is not None,
                    'met': value is not None and bool(ok)})

    def ratio(a, b):
        return a / b if a and b else None

    small, imports = res.get('small', {}), res.get('imports', {})
    r = ratio(small.get('export', {}).get('wall_s_median'), imports.get('wall_s_median'))
    add('small_export_vs_import_floor', f'small export (demo probe00, default extensions) <= '
        f'{TARGETS["small_export_vs_import_floor"]:g} x the import floor', r,
        r is not None and r <= TARGETS['small_export_vs_import_floor'], 'x import floor')
    t = small.get('demo', {}).get('wall_s_median')
    add('demo_s', f'`alfnwb demo` end to end < {TARGETS["demo_s"]:g} s', t, t is not None and t < TARGETS['demo_s'],
        's')
    for size in all_sizes(res):
        _size_targets(size, add, ratio)
    _batch_targets(res.get('batch', {}), add)
    v = res.get('variants', {})
    med = {n: v.get(n, {}).get('wall_s_median') for n in ('default', 'peer')}
    r = ratio(med['peer'], med['default'])
    add('peer_wall_vs_default', f'alfnwb default >= {TARGETS["peer_wall_vs_default"]:g} x faster than the peer '
        '(same extensions)', r, r is not None and r >= TARGETS['peer_wall_vs_default'], 'x faster')
    r = ratio(v.get('default', {}).get('output_bytes'), v.get('peer', {}).get('output_bytes'))
    add('default_size_vs_peer', 'alfnwb default file size <= the peer\'s', r,
        r is not None and r <= TARGETS['default_size_vs_peer'], 'x peer size')
    for name in ('help', 'info'):
        t = res.get('cli', {}).get(name, {}).get('wall_s_median')
        cmd = 'alfnwb --help' if name == 'help' else 'alfnwb info FILE'
        limit = TARGETS[f'{name}_s']
        add(f'{name}_s', f'`{cmd}` answers in < {limit:g} s', t, t is not None and t < limit, 's')
    return out


def _size_targets(size: dict, add, ratio) -> None:
    """At one size: core against the import-inclusive floor; peak RSS of core and default against ALF bytes."""
    s, v = size['sizes'], size['variants']
    label = _size_label(s)
    r = ratio(v.get('core', {}).get('wall_s_median'), v.get('floor_imports', {}).get('wall_s_median'))
    limit = TARGETS['core_wall_vs_floor_imports']
    add(f'core_wall_vs_floor_imports@{s["spikes"]}x{s["units"]}',
        f'{label}: core wall time <= {limit:g} x the import-inclusive floor\'s', r, r is not None and r <= limit,
        'x floor_imports')
    limit = TARGETS['rss_vs_alf_bytes']
    for name in ('core', 'default'):
        r = ratio(v.get(name, {}).get('peak_rss_bytes_max'), s['alf_bytes'])
        add(f'{name}_rss_vs_alf_bytes@{s["spikes"]}x{s["units"]}',
            f'{label}: {name} peak RSS <= {limit:g} x the ALF spike array bytes', r, r is not None and r <= limit,
            'x ALF bytes')


def _batch_targets(b: dict, add) -> None:
    """Steady-state throughput of 2 local workers and of 2 Dask workers against 1 local worker."""
    s, limit = b.get('steady_speedup_2_workers'), TARGETS['batch_speedup_2_workers']
    add('batch_speedup_2_workers', f'`alfnwb batch --workers 2` >= {limit:g} x the steady-state throughput of 1 '
        'worker', s, s is not None and s >= limit, 'x')
    s, limit = b.get('steady_speedup_dask_2_workers'), TARGETS['dask_speedup_2_workers']
    add('dask_speedup_2_workers', f'`run_batch` on a Dask LocalCluster of 2 workers >= {limit:g} x the steady-state '
        'throughput of 1 local worker', s, s is not None and s >= limit, 'x')


def _fmt(x, spec='.2f'):
    return '-' if x is None else format(x, spec)


def markdown_block(res: dict) -> str:
    """The results between the benchmark markers of the Markdown document."""
    finished = res.get('finished', res.get('started', ''))
    lines = [BEGIN, '', '## Results', '', f'Run of {finished[:16].replace("T", " ")}: `{res["command"]}`', '']
    lines += _md_variants(res) + _md_targets(res) + _md_sizes(res) + _md_fixed(res) + _md_batch(res.get('batch'))
    lines += _md_peer(res.get('variants', {})) + _md_phases(res.get('alfnwb_phases', {})) + _md_machine(res)
    return '\n'.join(lines)


def _md_variants(res: dict) -> list[str]:
    """The first size: every variant."""
    s, v = res['sizes'], res.get('variants', {})
    floor = v.get('floor', {}).get('wall_s_median')
    lines = [f'One synthetic probe: **{s["spikes"]:,} spikes**, {s["units"]} units, {s["channels"]} channels, '
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
    return lines


def _md_targets(res: dict) -> list[str]:
    lines = ['', '### Targets', '', 'Measured, never asserted. A target whose measurement is missing is not met.', '',
             '| target | measured | met |', '|---|---:|---|']
    for t in res['targets']:
        if not t.get('measured', t['value'] is not None):
            lines.append(f'| {t["target"]} | not measured | not met |')
            continue
        value = _fmt(t['value'], '.2f' if t['met'] else '.3f')  # a miss never reads as its limit (1.797, not 1.80)
        lines.append(f'| {t["target"]} | {value} {t["unit"]} | {"**met**" if t["met"] else "**missed**"} |')
    return lines


def _md_sizes(res: dict) -> list[str]:
    """The floors, core and default at every size."""
    sizes = all_sizes(res)
    if len(sizes) < 2:
        return []
    lines = ['', '### Sizes', '', 'The floors, core and default at each size (fresh processes; wall time the median '
             'of the size\'s runs, peak RSS the largest):', '',
             '| size | ALF MB | variant | wall s | x floor_imports | peak RSS GB | RSS / ALF bytes | RSS / loaded ALF '
             'bytes | output MB | runs |',
             '|---|---:|---|---:|---:|---:|---:|---:|---:|---|']
    for size in sizes:
        s, v = size['sizes'], size['variants']
        base = v.get('floor_imports', {}).get('wall_s_median')
        for name in EXTRA_SIZE_VARIANTS:
            d = v.get(name)
            if d is None:
                continue
            wall, rss, out = d.get('wall_s_median'), d.get('peak_rss_bytes_max'), d.get('output_bytes')
            lines.append(f'| {_size_label(s)} | {s["alf_bytes"] / 1e6:.0f} | {name} | {_fmt(wall, ".1f")} | '
                         f'{_fmt(wall / base if wall and base else None, ".2f")} | '
                         f'{_fmt(rss / 1e9 if rss else None)} | '
                         f'{_fmt(rss / s["alf_bytes"] if rss else None)} | '
                         f'{_fmt(rss / s["alf_bytes_loaded"] if rss and s.get("alf_bytes_loaded") else None)} | '
                         f'{_fmt(out / 1e6 if out else None, ".0f")} | '
                         f'{sum(x["returncode"] == 0 for x in d["runs"])}/{len(d["runs"])} |')
    return lines


def _md_fixed(res: dict) -> list[str]:
    """The fixed cost: import floor, small export, demo, --help, info."""
    imports, small, cli = res.get('imports'), res.get('small', {}), res.get('cli', {})
    rows = [('import floor', f'`python -c "{IMPORTS}"`', imports)]
    if 'pid' in small:
        rows += [('small export', '`alfnwb --quiet export --pid <demo probe00> --cache-dir DIR -o OUT.nwb '
                  f'--overwrite` ({small["pid"][:8]}…, default extensions)', small.get('export')),
                 ('demo', '`alfnwb --quiet demo --output DIR` (synthesis, export of the session, summary)',
                  small.get('demo'))]
    rows += [(f'CLI {name}', f'`alfnwb {"--help" if name == "help" else "info default.nwb"}`', cli.get(name))
             for name in ('help', 'info')]
    rows = [r for r in rows if r[2]]
    if not rows:
        return []
    lines = ['', '### Fixed cost', '', f'Fresh processes, median of {res["args"].get("cli_repeat")} run(s):', '',
             '| what | command | wall s | peak RSS GB | runs ok |', '|---|---|---:|---:|---|']
    for name, cmd, d in rows:
        rss = d.get('peak_rss_bytes_max') or max((x['peak_rss_bytes'] for x in d.get('runs', [])), default=None)
        lines.append(f'| {name} | {cmd} | {_fmt(d.get("wall_s_median"))} | {_fmt(rss / 1e9 if rss else None)} | '
                     f'{sum(x["returncode"] == 0 for x in d["runs"])}/{len(d["runs"])} |')
    return lines


def _md_batch(b: dict | None) -> list[str]:
    if not b:
        return []
    when = f' (measured {b["measured"][:16].replace("T", " ")}: `{b["command"]}`)' if b.get('measured') else ''
    shown = {'1': '`alfnwb batch --workers 1`', '2': '`alfnwb batch --workers 2`',
             'dask2': '`run_batch` on `LocalCluster(n_workers=2, threads_per_worker=1)` (`dask_batch.py`), '
                      'the workers configured as docs/publish.md advises (`alfnwb.batch.DASK_WORKER_CONFIG`)',
             'dask2-profiled': "the same with Dask's defaults: the workers' profiler on every 10 ms, the event "
                               "loop's tick every 20 ms, its system monitor every 500 ms (`--dask-defaults`)",
             'pair': f'two `alfnwb batch --workers 1` at once, on {b["insertions"] // 2} insertions each '
                     '(nothing shared but the machine)'}
    lines = ['', '### Batch throughput', '',
             f'On {b["insertions"]} insertions of {b["spikes_per_insertion"]:,} spikes and {b["units"]} units each, '
             f'`--no-validate --extensions none`, a fresh dandiset folder per run (median of {b["repeat"]}){when}. '
             'Wall s is the whole process; run_batch s is `run_batch` alone (the CLI\'s `report.json`; for Dask '
             'timed in `dask_batch.py` after the cluster started). The steady state leaves the start-up out: each '
             'of the run\'s workers finishes a job every median job duration (manifest), so it does workers / '
             'median job s:', '',
             '| run | wall s | run_batch s | cluster start s | insertions / min (wall) | median job s '
             '| insertions / min (steady state) | seconds of each job (manifest), per run |',
             '|---|---:|---:|---:|---:|---:|---:|---|']
    for mode, d in b['workers'].items():
        jobs = '; '.join(', '.join(f'{x:.1f}' for x in r.get('job_s', [])) for r in d['runs'])
        lines.append(f'| {shown.get(mode, mode)} | {_fmt(d.get("wall_s_median"), ".1f")} | '
                     f'{_fmt(d.get("batch_s_median"), ".1f")} | {_fmt(d.get("cluster_start_s_median"), ".1f")} | '
                     f'{_fmt(d.get("insertions_per_min"), ".1f")} | {_fmt(d.get("job_s_median"))} | '
                     f'{_fmt(d.get("steady_insertions_per_min"), ".1f")} | {jobs} |')
    cap = b.get('cpu_capacity', {})
    lines += ['', f'Speed-up over 1 worker, steady state: 2 local workers {_fmt(b.get("steady_speedup_2_workers"))} x, '
              f'Dask 2 workers {_fmt(b.get("steady_speedup_dask_2_workers"))} x (with Dask\'s defaults: '
              f'{_fmt(b.get("steady_speedup_dask_2_workers_profiled"))} x), the pair of independent batches '
              f'{_fmt(b.get("steady_speedup_pair"))} x. Whole runs: 2 local workers '
              f'{_fmt(b.get("speedup_2_workers"))} x and the pair {_fmt(b.get("speedup_pair"))} x (process wall '
              f'times), Dask 2 workers {_fmt(b.get("speedup_dask_2_workers"))} x (run_batch seconds). Just before, '
              f'two CPU-bound processes got {_fmt(cap.get("capacity_cores"))} cores of the 2 (a pure-Python loop took '
              f'{_fmt(cap.get("alone_s"))} s alone and {_fmt(max(cap["two_s"]) if cap.get("two_s") else None)} s '
              'two at a time).']
    return lines


def _md_peer(v: dict) -> list[str]:
    peer = v.get('peer', {}).get('phases_median_s')
    if not peer:
        return []
    total = sum(peer.values())
    lines = ['', '### Where the peer spends its time', '',
             'Seconds per phase inside the peer\'s process (`benchmarks/peer_chain.py`; median over runs; '
             '`import` is the import of numpy, pandas, SpikeInterface, neuroconv, ndx-spikesorting and pynwb):',
             '', '| phase | s | share |', '|---|---:|---:|']
    rest = max(v['peer']['wall_s_median'] - total, 0.0)
    rows = sorted(peer.items(), key=lambda kv: -kv[1]) + [('(interpreter start-up and exit)', rest)]
    lines += [f'| {k} | {x:.1f} | {100 * x / (total + rest):.0f} % |' for k, x in rows]
    return lines


def _md_phases(phases: dict) -> list[str]:
    names = [n for n in ('core', 'default') if 'steps' in phases.get(n, {})]
    if not names:
        return []
    lines = ['', '### Where alfnwb spends its time', '',
             'One instrumented run of each (`benchmarks/alfnwb_phases.py`: timers around the export\'s stages, '
             'RSS sampled every 20 ms; nested stages indented; its sampling thread makes the export write in '
             'this process, not in a forked child). Seconds, and the peak RSS reached by the end of the stage:',
             '']
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
    return lines


def _md_machine(res: dict) -> list[str]:
    m = res['machine']
    cap0, cap1 = res.get('cpu_capacity_start'), res.get('cpu_capacity_end')
    commits = sorted({x.get('alfnwb_git', '') for size in all_sizes(res) for d in size['variants'].values()
                      for x in d['runs']})
    load = ' / '.join(', '.join(f'{x:.1f}' for x in res[k]) for k in ('loadavg_start', 'loadavg_end') if k in res)
    return ['', '### Machine', '',
            f'{m["cores"]} cores ({m.get("cpu", "?")}), {m["ram_gb"]} GB RAM, Python {m["python"]}, '
            f'{m["platform"]}. Load average at start / end: {load} (other jobs on the machine make timings noisy).'
            + (f' Cores two CPU-bound processes got at start / end: {_fmt(cap0["capacity_cores"])} / '
               f'{_fmt(cap1["capacity_cores"])} of 2.' if cap0 and cap1 else '')
            + (' alfnwb measured: ' + ', '.join(commits) + ' (`+dirty`: files under src/ differed from the commit).'
               if commits else ''),
            '', 'Packages: ' + ', '.join(f'{k} {x}' for k, x in m['packages'].items() if x) + '.', '',
            f'Raw numbers (every run, phases, commands): [{Path(res["json"]).name}]({Path(res["json"]).name}).',
            '', END]


DOC_TEMPLATE = """# Performance

How long `alfnwb export` takes, and how much memory it needs, on full-size IBL probes
(Neuropixels 1.0, 384 channels; ~1000 units and ~17.5 M spikes over ~45 min, and larger), against

- the **floor**: reading the probe's ALF spike arrays with `np.load` and writing them once,
  uncompressed, with `h5py`: what any exporter must at least do;
- the **import-inclusive floor** (`floor_imports`): the same after importing what any export
  from ONE to NWB needs (`one.api`, `brainbox.io.one`, `pynwb`, `spikeinterface.core`);
- the **import floor**: a fresh interpreter importing just those modules;
- the **peer**: the tool chain a user would assemble instead, on the same spikes: a SpikeInterface
  sorting (`NumpySorting.from_samples_and_labels`), neuroconv's `add_sorting_to_nwbfile`, an
  in-memory `SortingAnalyzer` with the extensions of `alfnwb export`'s default (those
  SpikeInterface computes without a recording computed by SpikeInterface: `random_spikes`,
  `correlograms`, `isi_histograms`, `template_similarity`; the others set from ALF as alfnwb
  does), `ndx_spikesorting.add_sorting_analyzer_to_nwbfile` and pynwb's `NWBHDF5IO`.

## How to rerun

```bash
pip install ".[benchmark]"   # neuroconv (the peer) and psutil; alfnwb itself does not need them
python benchmarks/export_full_probe.py --sizes 17.5e6x1000,60e6x2000 --channels 384 --repeat 2 \\
    --cli-repeat 5 --batch --batch-repeat 3 --output docs/performance.md
```

It takes ~30 min on 2 cores once the probes are synthesized (~45-60 min the first time). The
synthetic probes are written once into `--workdir` (default `$TMPDIR/alfnwb-benchmark`: ~0.7 GB
for 17.5 M spikes, ~2.4 GB for 60 M, ~1.8 GB for the 16 medium insertions of `--batch`) and reused
by later runs with the same parameters. `--sizes` lists the probes as SPIKESxUNITS: the first runs
every variant of `--variants` `--repeat` times, the others the floors, core and default
`--extra-size-repeat` times. The raw numbers go to `docs/performance.json`. `--batch-only`
measures the batch throughput again into an existing JSON and document; `--from-json` only
re-renders the document. `tests/test_benchmark_smoke.py` runs it all on tiny probes.

## How it is measured

- The probes are synthesized by `benchmarks/synth_probe.py` from `alfnwb.synthetic`'s building
  blocks: realistic Poisson trains (log-normal rates around 4 Hz, 2 ms dead time), IBL's ALF dtypes
  (`spikes.times` float64, `spikes.samples` int64, `spikes.clusters` uint32, `spikes.amps` float64,
  `spikes.depths` float32), templates on 32 channels, cluster metrics under IBL's names, `alf`
  histology, one `iblsorter` sorting at revision `2024-05-06`, and the ONE cache tables.
- Every run is a fresh process (`subprocess`), so wall times include interpreter start-up and
  imports, as a user sees them. Variants are interleaved across repeats.
- Peak RSS is the memory a run's processes hold together at their peak: the larger of the
  child's `ru_maxrss` as returned by `os.wait4` (the largest resident set of the child or of any
  one of its descendants, not their sum) and the peak of the summed PSS of its process tree
  (PSS splits a shared page between the processes that map it, so the sum counts it once),
  sampled while there is more than one process, every 0.1 s or, for a large process, less often
  (reading PSS walks the page tables, ~20 ms a GB; the sampler keeps to 5 % of a core).
  `alfnwb export` writes its file in a forked child that shares the parent's pages; `ru_maxrss`
  alone leaves out the child's own pages (runs up to 2026-11-27 06:48 reported it alone: 0.03 GB
  too little for the core export at 17.5 M spikes, 0.2 GB for the default one). Both
  measurements, and the summed RSS, are in the JSON (`ru_maxrss_bytes`, `peak_tree_pss_sampled`,
  `peak_tree_rss_sampled`). The kernel carries the launcher's own high-water mark over `exec`
  into the child's `ru_maxrss`, so the driver synthesizes in a child process and stays small (its
  peak RSS is in the JSON, `driver_peak_rss_bytes`, far below any variant's).
- "ALF bytes" is the in-memory size of the four ALF spike arrays the floor moves (`spikes.times`,
  `spikes.clusters`, `spikes.amps`, `spikes.depths`: 24 bytes per spike); the targets are against
  them. "Loaded ALF bytes" adds `spikes.samples` (int64), which every export loads as well: 32 bytes
  per spike.
- `alfnwb export` writes per-spike datasets with gzip by default; the floors and the peer (a plain
  `NWBHDF5IO` write) are uncompressed. `core_uncompressed` shows what the compression costs.
- After the timed runs, one instrumented run each of core and default (`benchmarks/alfnwb_phases.py`)
  shows where alfnwb spends its time and memory; the peer reports its own phases.
- The fixed cost, in fresh processes, median of `--cli-repeat`: the import floor; the small export
  (`alfnwb export` of probe00 of the demo session, synthesized once as `alfnwb demo --seed 0`
  does, with the default extensions); `alfnwb demo` end to end (a fresh folder each run);
  `alfnwb --help` and `alfnwb info FILE` on the default output.
- With `--batch`, the same medium insertions are exported into fresh dandiset folders
  (`--no-validate --extensions none`) by `alfnwb batch --workers 1` and `--workers 2`, and by
  `alfnwb.batch.run_batch` on a Dask `LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)` (`benchmarks/dask_batch.py`: only `run_batch` is timed, the cluster's start-up
  is reported apart). Its workers start configured as `docs/publish.md` advises
  (`alfnwb.batch.DASK_WORKER_CONFIG`: Dask's statistical profiler off, the event loop's tick and
  system monitor less often); the same run with Dask's defaults (`dask2-profiled`) is reported
  beside it.
  2 local workers are compared with 1 on the processes' wall times, Dask with 1 local worker on
  `run_batch`'s own seconds (the CLI's `report.json`).
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
    """Write the results block into ``path``: the part before the markers from DOC_TEMPLATE, the rest kept.

    What precedes the results (how to rerun, how it is measured) is this script's, so it follows its
    changes; what follows them (reading notes, optimisations) is hand-written and survives.
    """
    head = DOC_TEMPLATE.split(BEGIN, 1)[0]
    text = path.read_text() if path.exists() else DOC_TEMPLATE
    if BEGIN in text and END in text:
        text = head + block + text.split(BEGIN, 1)[1].split(END, 1)[1]
    elif '## Optimisations' in text:
        before, tail = text.split('## Optimisations', 1)
        text = before + block + '\n\n## Optimisations' + tail
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--spikes', type=float, default=17.5e6, help='spikes of the probe (without --sizes)')
    p.add_argument('--units', type=int, default=1000, help='clusters of the probe (without --sizes)')
    p.add_argument('--sizes', metavar='SPIKESxUNITS,...',
                   help='probes to measure, e.g. 17.5e6x1000,60e6x2000: the first runs --variants, the others '
                        + ', '.join(EXTRA_SIZE_VARIANTS) + ' (default: --spikes x --units)')
    p.add_argument('--channels', type=int, default=384, help='sites of the probes (NP1, at most 384)')
    p.add_argument('--repeat', type=int, default=3, help='runs per variant of the first size (median wall time)')
    p.add_argument('--extra-size-repeat', type=int, default=1, help='runs per variant of every further size')
    p.add_argument('--cli-repeat', type=int, default=5,
                   help='runs of the import floor, the small export, alfnwb demo, alfnwb --help and alfnwb info')
    p.add_argument('--variants', default=','.join(VARIANTS), help='comma-separated, from ' + ', '.join(VARIANTS))
    p.add_argument('--workdir', default=str(Path(tempfile.gettempdir()) / 'alfnwb-benchmark'),
                   help='synthesized caches (kept, keyed by parameters) and the run\'s outputs')
    p.add_argument('--output', default=str(HERE.parent / 'docs' / 'performance.md'), help='Markdown report')
    p.add_argument('--json', help='raw numbers (default: --output with a .json suffix)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--timeout', type=float, default=3600.0, help='seconds before a run is killed')
    p.add_argument('--batch', action='store_true',
                   help='also measure alfnwb batch with 1 and 2 workers and run_batch on 2 Dask workers')
    p.add_argument('--batch-insertions', type=int, default=16)
    p.add_argument('--batch-spikes', type=float, default=3e6, help='spikes per batch insertion')
    p.add_argument('--batch-units', type=int, default=400, help='units per batch insertion')
    p.add_argument('--batch-repeat', type=int, default=2)
    p.add_argument('--batch-modes', default=','.join(BATCH_MODES),
                   help='batch runs, from ' + ', '.join(BATCH_MODES) + ' (1 is the speed-ups\' baseline)')
    p.add_argument('--no-phases', action='store_true',
                   help='skip the instrumented runs showing where alfnwb spends its time')
    p.add_argument('--keep-outputs', action='store_true', help='keep the NWB files of the run in the workdir')
    p.add_argument('--from-json', metavar='JSON', help='only rewrite --output from the raw numbers of an earlier run')
    p.add_argument('--batch-only', action='store_true',
                   help='only (re)measure the batch throughput (local and Dask workers): replaces the batch numbers '
                        'of the existing --json and rewrites --output')
    return p.parse_args(argv)


def _private_home(workdir: Path) -> tuple[Path, Path]:
    """A throw-away HOME for every process of the benchmark (ONE writes to ~/.one), and the run's folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix='home-', dir=workdir))
    os.environ['HOME'] = str(home)
    return home, Path(tempfile.mkdtemp(prefix='run-', dir=workdir))


def _cleanup(home: Path, run_dir: Path, keep_outputs: bool) -> None:
    shutil.rmtree(home, ignore_errors=True)
    if not keep_outputs:
        shutil.rmtree(run_dir / 'outputs', ignore_errors=True)
        for d in [*run_dir.glob('dandiset-*'), run_dir / 'small-cache']:
            shutil.rmtree(d, ignore_errors=True)


def batch_only(args) -> int:
    """Measure the batch throughput again and put it into an earlier run's JSON and Markdown."""
    output = Path(args.output).resolve()
    json_path = Path(args.json).resolve() if args.json else output.with_suffix('.json')
    res = json.loads(json_path.read_text())
    workdir = Path(args.workdir).resolve()
    args.workdir = str(workdir)
    home, run_dir = _private_home(workdir)
    try:
        res['batch'] = run_batch(args, dict(os.environ), run_dir)
        res['batch']['measured'] = datetime.datetime.now().isoformat(timespec='seconds')
        res['batch']['command'] = 'python benchmarks/export_full_probe.py ' + ' '.join(sys.argv[1:])
        res['targets'] = check_targets(res)
        json_path.write_text(json.dumps(res, indent=1, default=str) + '\n')
        write_markdown(output, markdown_block(res))
        log(f'wrote the batch numbers into {output} and {json_path}')
        return 0 if all(d['ok'] for d in res['batch']['workers'].values()) else 1
    finally:
        _cleanup(home, run_dir, keep_outputs=False)


def measure_all(args, variants: list[str], sizes: list[tuple[int, int]], env: dict, run_dir: Path) -> dict:
    """Every measurement of a run (all but the start and end of the machine's state), as the JSON's dict."""
    spikes, units = sizes[0]
    cache_dir, records, synth_s = synthesize(args.workdir, 1, spikes, units, args.channels, args.seed, env)
    probe = records[0]
    log(f'probe {probe["pid"]}: {probe["spikes"]:,} spikes, {probe["units"]} units, '
        f'{probe["duration_s"]:.0f} s ({"synthesized in %.0f s" % synth_s if synth_s else "cached"})')
    res = {'machine': machine_info(), 'sizes': size_record(probe, cache_dir, synth_s)}
    res['variants'] = run_variants(variants, args.repeat, probe, cache_dir, run_dir, env, args.timeout)
    if sizes[1:]:
        res['extra_sizes'] = run_extra_sizes(args, sizes[1:], env, run_dir)
    res['small'] = run_small(args.cli_repeat, env, run_dir)
    res['imports'] = res['small'].pop('imports', {'ok': False, 'runs': []})
    default_out = run_dir / 'outputs' / output_name('default') if 'default' in variants else None
    if default_out is None or not default_out.exists():
        default_out = run_dir / 'outputs' / output_name('core')
    res['cli'] = run_cli(args.cli_repeat, default_out, env, run_dir)
    if not args.no_phases and {'core', 'default'} <= set(variants):
        res['alfnwb_phases'] = run_phases(probe, cache_dir, run_dir, env)
    if args.batch:
        res['batch'] = run_batch(args, env, run_dir)
    return res


def failures(res: dict) -> list[str]:
    """What did not run to completion: variants (by size), the fixed-cost commands, batch runs."""
    out = [f'{v}@{size["sizes"]["spikes"]}x{size["sizes"]["units"]}' for size in all_sizes(res)
           for v, d in size['variants'].items() if not d['ok']]
    fixed = {'imports': res.get('imports', {}), **{k: res.get('small', {}).get(k, {}) for k in ('export', 'demo')},
             **res.get('cli', {})}
    out += [name for name, d in fixed.items() if not d.get('ok')]
    out += [f'batch-{m}' for m, d in res.get('batch', {}).get('workers', {}).items() if not d['ok']]
    return out


def _select_variants(text: str) -> list[str]:
    variants = [x.strip() for x in text.split(',') if x.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f'unknown variant(s): {", ".join(sorted(unknown))}')
    if 'peer' in variants and not has_peer():
        log('neuroconv / ndx-spikesorting not installed (pip install ".[benchmark]"): the peer is skipped')
        variants.remove('peer')
    return variants


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
    variants = _select_variants(args.variants)
    sizes = parse_sizes(args.sizes, args.spikes, args.units)
    args.spikes, args.units = sizes[0]
    workdir = Path(args.workdir).resolve()
    args.workdir = str(workdir)
    output = Path(args.output).resolve()
    json_path = Path(args.json).resolve() if args.json else output.with_suffix('.json')
    home, run_dir = _private_home(workdir)
    env = dict(os.environ)
    started = datetime.datetime.now().isoformat(timespec='seconds')
    loadavg_start, capacity_start = os.getloadavg(), cpu_capacity(env)
    log(f'CPU capacity for 2 processes: {capacity_start["capacity_cores"]} cores')
    try:
        res = {'command': 'python benchmarks/export_full_probe.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
               'started': started, 'args': vars(args), 'json': str(json_path)}
        res |= measure_all(args, variants, sizes, env, run_dir)
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
            state = 'MET   ' if t['met'] else 'MISSED' if t['measured'] else 'NOT MEASURED'
            log(f'  {state} {t["target"]}: {_fmt(t["value"], ".2f" if t["met"] else ".3f")} {t["unit"]}')
        failed = failures(res)
        if failed:
            log(f'failed: {", ".join(failed)} (see {run_dir / "logs"})')
        return 1 if failed else 0
    finally:
        _cleanup(home, run_dir, args.keep_outputs)


if __name__ == '__main__':
    sys.exit(main())
