"""``alfnwb.batch.run_batch`` on a Dask ``LocalCluster``: the batch throughput with Dask workers.

Starts ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)`` and a ``Client``, its
workers configured as ``docs/publish.md`` advises (``alfnwb.batch.DASK_WORKER_CONFIG``: Dask's
statistical profiler off, the event loop's tick and system monitor less often; ``--dask-defaults``:
Dask's own configuration, the profiler on every 10 ms), plans the jobs of the pids (``plan_jobs``
on a local ``One``), then times only ``run_batch`` into a fresh dandiset folder with the options of
the CLI batch variant of ``export_full_probe.py`` (``--no-validate --extensions none``). The
cluster's start-up and the planning are timed apart.
Run in a fresh process by ``export_full_probe.py``; prints JSON on the last line of stdout.

    python benchmarks/dask_batch.py --cache-dir CACHE --pids PIDS.txt --dandiset-dir DIR [--workers 2] [--dask-defaults]
"""

from __future__ import annotations

import argparse
import json
import logging
import time

T0 = time.perf_counter()


def run(cache_dir: str, pids_file: str, dandiset_dir: str, workers: int = 2, dask_defaults: bool = False) -> dict:
    """Start the cluster, plan, run the batch; seconds of each and what was written.

    Returns
    -------
    dict
        ``cluster_start_s``, ``plan_s``, ``batch_s`` (run_batch alone: the steady-state wall time),
        ``done``, ``failed``, ``ok``, ``workers``, ``profiling_workers`` (workers with Dask's profiler on).
    """
    import dask.config
    from distributed import Client, LocalCluster
    from one.api import One

    from alfnwb.batch import DASK_WORKER_CONFIG, dask_profiling_workers, plan_jobs, read_id_list, run_batch
    from alfnwb.nwb.chunks import default_jobs

    out = {'import_s': time.perf_counter() - T0, 'workers': workers}
    t = time.perf_counter()
    # no dashboard: no fixed port to collide with other work on a shared machine. The workers take the
    # configuration of this process as they start (their nannies pass it on)
    with dask.config.set({} if dask_defaults else DASK_WORKER_CONFIG), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        out['cluster_start_s'] = time.perf_counter() - t
        out['profiling_workers'] = len(dask_profiling_workers(client))
        t = time.perf_counter()
        jobs = plan_jobs(One(cache_dir=cache_dir, mode='local'), pids=read_id_list(pids_file, 'pid'))
        out['plan_s'] = time.perf_counter() - t
        t = time.perf_counter()
        # compression threads split the cores between the workers, as alfnwb batch --workers N does
        n_jobs = max(1, default_jobs() // workers)
        report = run_batch(jobs, dandiset_dir, {'cache_dir': cache_dir}, client=client, validate=False,
                           progress=False, export_kwargs={'extensions': 'none', 'n_jobs': n_jobs})
        out['batch_s'] = time.perf_counter() - t
    out.update(n_jobs=n_jobs, done=report.done, failed=report.failed, ok=report.ok, failures=report.failures)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--cache-dir', required=True, help='local ONE cache')
    p.add_argument('--pids', required=True, help='file of probe insertion ids, one a line')
    p.add_argument('--dandiset-dir', required=True, help='output folder (fresh for a timed run)')
    p.add_argument('--workers', type=int, default=2, help='Dask worker processes (one thread each)')
    p.add_argument('--dask-defaults', action='store_true', help="Dask's own worker configuration, not "
                   "alfnwb.batch.DASK_WORKER_CONFIG (the profiler on: run_batch warns)")
    a = p.parse_args(argv)
    res = run(a.cache_dir, a.pids, a.dandiset_dir, a.workers, a.dask_defaults)
    print(json.dumps(res))
    return 0 if res['ok'] else 1


if __name__ == '__main__':
    raise SystemExit(main())
