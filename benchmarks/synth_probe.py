"""Synthesize full-size IBL probes into a local ONE cache, fast.

:func:`alfnwb.synthetic.write_cache` writes realistic sessions with several probes and sortings, and
computes the cluster metrics with brainbox (a per-unit loop: minutes for a full probe). Here each
session holds ONE probe with ONE sorting (``alf/probe00/iblsorter/#2024-05-06#/``, ``alf``
histology), built from the package's public building blocks (``probe_channels``, ``spike_trains``,
``unit_templates``, ``probe_clock``, ``save_alf_object``, the cache-table and REST-cache helpers),
with the cluster metrics computed in bulk (``np.bincount`` and one sort) under IBL's column names.

The spike count is exact: trains are drawn for a slightly longer recording with the module's
realistic rates (log-normal around 4 Hz, 2 ms dead time) and cut at the N-th spike, so the recording
length follows from ``--spikes`` and ``--units`` (17.5 M spikes of 1000 units: ~45 min).

    python benchmarks/synth_probe.py --cache-dir /tmp/c --spikes 2e5 --units 30
    python benchmarks/synth_probe.py --workdir /tmp/w --spikes 17.5e6 --units 1000 --json  # cached
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: Bumped whenever what is written changes: part of the cache key, so old caches are not reused.
SYNTH_VERSION = 1
PROBE = 'probe00'
SORTER = 'iblsorter'
LAYOUT = 'NP1'
TRACK = 'thalamus'
HISTOLOGY = 'alf'
MARKER = 'synth_probe.json'


def _n_channels_dict(channels: dict, n: int) -> dict:
    """The first ``n`` sites of a probe (every per-channel array cut; the private ``_`` entries kept)."""
    if n == channels['rawInd'].size:
        return channels
    return {k: (v[:n] if (isinstance(v, np.ndarray) and not k.startswith('_')) else v) for k, v in channels.items()}


def _exact_trains(n_spikes: int, n_units: int, rng: np.random.Generator):
    """Spike trains of exactly ``n_spikes`` spikes: drawn for a longer recording, cut at the N-th spike."""
    from alfnwb.synthetic import FS, spike_trains

    # mean of the module's rates: log-normal(log 4 Hz, 1) has mean 4 e^0.5 ~ 6.6 Hz (clipped at 0.3-60 Hz)
    duration = max(n_spikes / (n_units * 6.6) * 1.25, 5.0)
    state = rng.bit_generator.state
    for _ in range(20):
        rng.bit_generator.state = state  # the same units at every attempt, only longer
        samples, clu = spike_trains(n_units, duration, rng)
        if samples.size >= n_spikes:
            samples, clu = samples[:n_spikes], clu[:n_spikes]
            last = samples[-1] / FS if n_spikes else 0.0
            return samples, clu, float(np.floor(last) + 1.0)
        duration *= 1.5 * n_spikes / max(samples.size, 1)
    raise RuntimeError(f'could not draw {n_spikes} spikes for {n_units} units')


def cluster_metrics(clu: np.ndarray, times: np.ndarray, amps: np.ndarray, depths: np.ndarray, n_units: int,
                    duration: float, rng: np.random.Generator) -> pd.DataFrame:
    """IBL's cluster metrics (``clusters.metrics.pqt`` columns and dtypes), computed in bulk.

    Counts, rates, amplitudes (min, median, max, spread), presence, refractory violations and
    drift come from the spikes; the scores that need brainbox's fits (noise cut-off, sliding
    refractory period confidence, missed spikes) are drawn around realistic values, and ``label``
    and ``bitwise_fail`` follow from them as in IBL's pipeline (three criteria).
    """
    n = n_units
    counts = np.bincount(clu, minlength=n).astype(np.float64)
    ends = np.cumsum(counts).astype(np.int64)
    starts = ends - counts.astype(np.int64)
    alive = counts > 0
    nan = np.full(n, np.nan)
    # amplitudes sorted within each unit (one lexsort): min, median, max by position
    amp_sorted = amps[np.lexsort((amps, clu))]
    last = np.maximum(ends - 1, 0)
    lo_mid = np.minimum(starts + (counts.astype(np.int64) - 1) // 2, last)
    hi_mid = np.minimum(starts + counts.astype(np.int64) // 2, last)
    amp_min = np.where(alive, amp_sorted[np.minimum(starts, amp_sorted.size - 1)] if amps.size else nan, nan)
    amp_max = np.where(alive, amp_sorted[last] if amps.size else nan, nan)
    amp_median = np.where(alive, 0.5 * (amp_sorted[lo_mid] + amp_sorted[hi_mid]) if amps.size else nan, nan)
    db = 20 * np.log10(np.maximum(amps, 1e-12))
    s1 = np.bincount(clu, weights=db, minlength=n)
    s2 = np.bincount(clu, weights=db * db, minlength=n)
    with np.errstate(invalid='ignore', divide='ignore'):
        amp_std_db = np.where(alive, np.sqrt(np.maximum(s2 / counts - (s1 / counts) ** 2, 0)), nan)
    # presence: 10 s bins with at least one spike (one 2-d bincount, units x bins)
    n_bins = max(int(np.ceil(duration / 10.0)), 1)
    b = np.minimum((times / 10.0).astype(np.int64), n_bins - 1)
    per_bin = np.bincount(clu.astype(np.int64) * n_bins + b, minlength=n * n_bins).reshape(n, n_bins)
    presence = (per_bin > 0).mean(axis=1)
    presence_std = per_bin.std(axis=1)
    # inter-spike intervals within units (a stable sort keeps time order within a unit)
    by_unit = np.argsort(clu, kind='stable')
    t_u, c_u = times[by_unit], clu[by_unit]
    same = c_u[1:] == c_u[:-1]
    isi = np.diff(t_u)
    below2 = np.bincount(c_u[1:][same & (isi < 0.002)], minlength=n).astype(np.float64)
    viol15 = np.bincount(c_u[1:][same & (isi < 0.0015)], minlength=n).astype(np.float64)
    # Hill et al. (2011) contamination from violations of a 1.5 ms refractory period
    rp, rate = 0.0015, counts / max(duration, 1e-9)
    with np.errstate(invalid='ignore', divide='ignore'):
        contamination = np.where(alive, np.clip(viol15 * duration / (2 * rp * counts ** 2), 0, 1), nan)
    # drift: cumulated absolute change of the unit's median depth across 60 s windows, per hour
    n_win = max(int(np.ceil(duration / 60.0)), 1)
    w = np.minimum((times / 60.0).astype(np.int64), n_win - 1)
    key = clu.astype(np.int64) * n_win + w
    d_sum = np.bincount(key, weights=depths, minlength=n * n_win).reshape(n, n_win)
    d_cnt = np.bincount(key, minlength=n * n_win).reshape(n, n_win)
    with np.errstate(invalid='ignore', divide='ignore'):
        d_mean = d_sum / d_cnt
    steps = np.abs(np.diff(d_mean, axis=1))
    drift = np.where(alive, np.nansum(steps, axis=1) / max(duration / 3600.0, 1e-9), nan)
    # scores of brainbox's fits, drawn around realistic values
    noise_cutoff = np.where(alive, rng.gamma(2.0, 1.5, n) - 1.5, nan)
    missed = np.where(alive, np.clip(rng.beta(1.0, 12.0, n), 0, 1), nan)
    max_conf = np.where(alive, rng.uniform(20, 100, n), nan)
    min_cont = np.where(alive, np.where(rng.uniform(size=n) < 0.7, rng.uniform(0.5, 20, n), np.nan), nan)
    sliding = np.where(alive, (max_conf > 90).astype(float), nan)
    forced = np.where(alive, (max_conf > 70).astype(float), nan)
    # IBL's label: fraction of passed criteria (sliding RP, noise cut-off < 5, amplitude > 50 uV)
    passed = np.c_[sliding == 1, noise_cutoff < 5, amp_median > 50e-6]
    label = np.where(alive, passed.mean(axis=1), 0.0)
    bitwise = ((~passed[:, 0]) * 1 + (~passed[:, 1]) * 2 + (~passed[:, 2]) * 4).astype(np.uint8)
    return pd.DataFrame({
        'cluster_id': np.arange(n, dtype=np.int64),
        'amp_max': amp_max, 'amp_min': amp_min, 'amp_median': amp_median, 'amp_std_dB': amp_std_db,
        'contamination': contamination, 'contamination_alt': contamination * 0.9, 'drift': drift,
        'missed_spikes_est': missed, 'noise_cutoff': noise_cutoff, 'presence_ratio': presence,
        'presence_ratio_std': presence_std, 'slidingRP_viol': sliding, 'spike_count': counts,
        'slidingRP_viol_forced': forced, 'max_confidence': max_conf, 'min_contamination': min_cont,
        'n_spikes_below2': np.where(alive, below2, nan), 'firing_rate': rate, 'label': label,
        'bitwise_fail': bitwise, 'ks2_label': np.where(rng.uniform(size=n) < 0.4, 'good', 'mua'),
    })


def _probe_sorting(channels: dict, n_spikes: int, n_units: int, rng: np.random.Generator, pid: str,
                   clock: tuple[float, float]):
    """ALF ``spikes`` and ``clusters`` of one sorting (dtypes as IBL's), and the recording length (s)."""
    from alfnwb.synthetic import FS, REVISION, stable_uuid, unit_placement, unit_templates

    samples, clu, duration = _exact_trains(n_spikes, n_units, rng)
    drift, offset = clock
    times = samples / FS * (1.0 + drift) + offset  # the probe's clock synchronised to the session's
    peak, unit_amp, depths_c, amps, depths = unit_placement(channels, n_units, clu, rng)
    spikes = {'times': times, 'samples': samples, 'clusters': clu.astype(np.uint32), 'amps': amps,
              'depths': depths, 'templates': clu.astype(np.uint32)}
    waveforms, wf_channels = unit_templates(peak, unit_amp, channels, rng)
    metrics = cluster_metrics(clu, times, amps, depths.astype(np.float64), n_units, duration, rng)
    uuids = [stable_uuid(pid, f'{SORTER}{REVISION}', 'cluster', i) for i in range(n_units)]
    clusters = {'channels': peak.astype(np.int64), 'depths': depths_c.astype(np.float64), 'amps': unit_amp,
                'uuids': pd.DataFrame({'uuids': uuids}), 'metrics': metrics, 'waveforms': waveforms,
                'waveformsChannels': wf_channels}
    return spikes, clusters, duration


def write_probe_cache(cache_dir: str | Path, probes: list[tuple[int, int]], n_channels: int = 384,
                      seed: int = 0) -> list[dict]:
    """Write one session per probe, one probe (``probe00``) and one sorting per session, as a ONE cache.

    Parameters
    ----------
    cache_dir : str or pathlib.Path
        Folder of the cache (``sessions.pqt``, ``datasets.pqt``, ``insertions.pqt``, ``.rest``, ALF files).
    probes : list of (int, int)
        ``(n_spikes, n_units)`` of each probe.
    n_channels : int
        Sites of the NP1 probe kept (384: all).
    seed : int

    Returns
    -------
    list of dict
        Per probe: pid, eid, collection (absolute ALF folder), spikes, units, channels, duration_s,
        and the bytes of the ALF spike arrays.
    """
    from alfnwb.synthetic import (REVISION, SUBJECTS, SynthProbe, SynthSession, dataset_rows, insertion_responses,
                                  insertion_row, openapi_schema, probe_channels, probe_clock, rest_records,
                                  save_alf_object, session_row, stable_uuid, write_tables)

    if not 32 <= n_channels <= 384:
        raise ValueError('--channels: 32 to 384 sites of a Neuropixels 1.0 probe')
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng_master = np.random.default_rng(seed)
    ses_rows, dset_rows, ins_rows, out = [], [], [], []
    responses = {'/api/schema': openapi_schema()}
    for i, (n_spikes, n_units) in enumerate(probes):
        lab, subject = SUBJECTS[(seed + i) % len(SUBJECTS)]
        date = datetime.date(2024, 1, 8) + datetime.timedelta(days=i)
        eid = stable_uuid('benchmark', seed, 'session', i)
        pid = stable_uuid('benchmark', seed, 'insertion', i, PROBE)
        spath = cache_dir / lab / 'Subjects' / subject / date.isoformat() / '001'
        session = SynthSession(eid=eid, lab=lab, subject=subject, date=date, number=1, path=spath)
        ses_rows.append(session_row(session))
        rng = np.random.default_rng(rng_master.integers(2 ** 32))
        channels = _n_channels_dict(probe_channels(LAYOUT, TRACK, HISTOLOGY, rng), n_channels)
        clock = probe_clock(pid)
        probe = SynthProbe(pid=pid, eid=eid, name=PROBE, layout=LAYOUT, histology=HISTOLOGY,
                           channels={k: v for k, v in channels.items() if not k.startswith('_')},
                           clock_drift=clock[0], clock_offset=clock[1])
        spikes, clusters, duration = _probe_sorting(probe.channels, int(n_spikes), int(n_units), rng, pid, clock)
        alf_channels = {'localCoordinates': channels['localCoordinates'], 'rawInd': channels['rawInd'],
                        'brainLocationIds_ccf_2017': channels['atlas_id'], 'mlapdv': channels['mlapdv']}
        collection = f'alf/{PROBE}/{SORTER}'
        folder = spath / collection / f'#{REVISION}#'
        files: list[Path] = []
        save_alf_object(folder, 'spikes', spikes, files)
        save_alf_object(folder, 'clusters', clusters, files)
        save_alf_object(folder, 'channels', alf_channels, files)
        dset_rows += dataset_rows(session, [(f, True) for f in files])
        insertion, trajectories = rest_records(probe, channels, session)
        ins_rows.append(insertion_row(probe, insertion))
        responses.update(insertion_responses(probe, insertion, trajectories))
        out.append({'pid': pid, 'eid': eid, 'alf_dir': str(folder), 'spikes': int(n_spikes), 'units': int(n_units),
                    'channels': int(n_channels), 'duration_s': duration,
                    'alf_bytes': int(sum(spikes[k].nbytes for k in ('times', 'clusters', 'amps', 'depths'))),
                    'alf_bytes_loaded': int(sum(spikes[k].nbytes for k in ('times', 'clusters', 'amps', 'depths',
                                                                            'samples'))),
                    'alf_bytes_all_spikes': int(sum(v.nbytes for v in spikes.values()))})
        del spikes, clusters

    # the cache tables exactly as alfnwb.synthetic.write_cache writes them
    write_tables(cache_dir, ses_rows, dset_rows, ins_rows, responses, origin='alfnwb-benchmark')
    return out


def cache_key(probes: list[tuple[int, int]], n_channels: int, seed: int) -> str:
    """Folder name of a synthesized cache: the parameters, so that other parameters get another cache."""
    import hashlib

    text = json.dumps({'v': SYNTH_VERSION, 'probes': [[int(s), int(u)] for s, u in probes], 'channels': n_channels,
                       'seed': seed})
    sizes = '-'.join(f'{int(s)}x{int(u)}' for s, u in probes[:2]) + ('-etc' if len(probes) > 2 else '')
    return f'cache-{sizes}-ch{n_channels}-s{seed}-{hashlib.sha1(text.encode()).hexdigest()[:8]}'


def cached_probe_cache(workdir: str | Path, probes: list[tuple[int, int]], n_channels: int = 384, seed: int = 0,
                       log=print) -> tuple[Path, list[dict], float]:
    """The cache for these parameters in ``workdir``: reused when complete, else written anew.

    Returns
    -------
    (cache_dir, probe records, seconds spent synthesizing: 0 when reused)
    """
    import shutil

    cache_dir = Path(workdir) / cache_key(probes, n_channels, seed)
    marker = cache_dir / MARKER
    if marker.exists():
        return cache_dir, json.loads(marker.read_text())['probes'], 0.0
    if cache_dir.exists():
        shutil.rmtree(cache_dir)  # an interrupted synthesis
    log(f'synthesizing {len(probes)} probe(s) into {cache_dir}')
    t0 = time.perf_counter()
    records = write_probe_cache(cache_dir, probes, n_channels=n_channels, seed=seed)
    elapsed = time.perf_counter() - t0
    marker.write_text(json.dumps({'probes': records, 'synth_s': elapsed, 'version': SYNTH_VERSION}, indent=1))
    return cache_dir, records, elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument('--cache-dir', help='write the cache here (replacing its tables)')
    where.add_argument('--workdir', help='reuse or write the cache for these parameters in a folder of WORKDIR')
    p.add_argument('--spikes', type=float, default=17.5e6, help='spikes per probe')
    p.add_argument('--units', type=int, default=1000)
    p.add_argument('--channels', type=int, default=384)
    p.add_argument('--probes', type=int, default=1, help='sessions (one probe each)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', action='store_true', help='print {cache_dir, probes, synth_s} as JSON on stdout')
    args = p.parse_args(argv)
    import tempfile

    os.environ['HOME'] = tempfile.mkdtemp(prefix='alfnwb-bench-home-')  # ONE writes to ~/.one: not the user's
    probes = [(int(args.spikes), args.units)] * args.probes

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if args.workdir:
        cache_dir, recs, synth_s = cached_probe_cache(args.workdir, probes, args.channels, args.seed, log=log)
    else:
        cache_dir = Path(args.cache_dir)
        recs = write_probe_cache(cache_dir, probes, n_channels=args.channels, seed=args.seed)
        synth_s = time.perf_counter() - t0
    if args.json:
        print(json.dumps({'cache_dir': str(Path(cache_dir).resolve()), 'probes': recs, 'synth_s': synth_s}))
    else:
        for r in recs:
            print(f"pid {r['pid']}  eid {r['eid']}  {r['spikes']} spikes  {r['units']} units  "
                  f"{r['duration_s']:.0f} s")
        log(f'{cache_dir}: {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
