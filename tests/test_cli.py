"""The command line: a thin layer with one-line errors and exit codes."""

import subprocess
import sys

from alfnwb.cli import main


def run(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'alfnwb.cli', *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands():
    r = run('--help')
    assert r.returncode == 0
    for cmd in ('export', 'info', 'synth', 'demo'):
        assert cmd in r.stdout


def test_synth_export_info(tmp_path, run_main):
    """The export runs as its own process (exit code and output of the real command); the other
    commands run through ``main`` in this process: the same code from the parsed arguments on."""
    cache = tmp_path / 'cache'
    r = run_main('--quiet', 'synth', '--cache-dir', str(cache), '--seed', '5', '--units', '8', '--duration', '30')
    assert r.returncode == 0, r.stderr
    pid = r.stdout.split('pid ')[1].split()[0]
    out = tmp_path / 'p.nwb'
    r = run('--quiet', 'export', '--pid', pid, '--cache-dir', str(cache), '--spike-sorter', 'pykilosort', '-o', str(out))
    assert r.returncode == 0, r.stderr
    assert 'alf/probe00/pykilosort' in r.stdout and out.exists()
    r = run_main('info', str(out))
    assert r.returncode == 0
    assert 'sorter pykilosort' in r.stdout and 'histology alf' in r.stdout and 'revision unrevisioned' in r.stdout
    assert 'analyzer extensions: random_spikes, templates' in r.stdout and 'template_similarity' in r.stdout
    # a chosen subset of extensions, with parameters
    sub = tmp_path / 'sub.nwb'
    r = run_main('--quiet', 'export', '--pid', pid, '--cache-dir', str(cache), '--extensions', 'correlograms,templates',
                 '--correlogram-window-ms', '20', '--correlogram-bin-ms', '0.5', '-o', str(sub))
    assert r.returncode == 0, r.stderr
    assert 'analyzer extensions: templates, correlograms' in r.stdout
    r = run_main('info', '--json', str(sub))
    import json
    assert json.loads(r.stdout)['probes'][0]['extensions'] == ['templates', 'correlograms']
    from alfnwb.readback import read_sorting_analyzer
    ccg, bins = read_sorting_analyzer(sub).get_extension('correlograms').get_data()
    assert ccg.shape[2] == 40 and bins[0] == -10 and bins[-1] == 10
    r = run_main('export', '--pid', pid, '--cache-dir', str(cache), '--extensions', 'waveforms', '-o',
                 str(tmp_path / 'w.nwb'))
    assert r.returncode == 1 and 'need the raw data' in r.stderr and not (tmp_path / 'w.nwb').exists()
    # user errors: one line, no traceback, non-zero exit
    r = run_main('export', '--pid', pid, '--cache-dir', str(cache), '--spike-sorter', 'ks4', '-o',
                 str(tmp_path / 'q.nwb'))
    assert r.returncode == 3
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith('alfnwb: error: insertion ' + pid) and 'Traceback' not in r.stderr
    assert not (tmp_path / 'q.nwb').exists()
    r = run_main('export', '--pid', pid, '--cache-dir', str(cache), '-o', str(out))
    assert r.returncode == 7 and 'exists' in r.stderr
    r = run_main('export', '--pid', pid, '--cache-dir', str(tmp_path / 'nowhere'), '-o', str(tmp_path / 'z.nwb'))
    assert r.returncode == 1 and 'no such folder' in r.stderr


SYNTH_BESIDE = r'''
import json, os, sys
from pathlib import Path

import alfnwb.synthetic as synthetic
from alfnwb.cli import _synthesize_while_importing

real = synthetic.write_cache

def traced(*args, **kwargs):
    Path(sys.argv[2]).write_text(str(os.getpid()))
    return real(*args, **kwargs)

synthetic.write_cache = traced
cache = _synthesize_while_importing(Path(sys.argv[1]), seed=3, sessions=1, n_units=4, duration=5.0)
try:
    _synthesize_while_importing(Path(sys.argv[2]) / 'cache', seed=3, sessions=1, n_units=4, duration=5.0)
    error = None
except Exception as e:
    error = f'{type(e).__name__}: {e}'
print(json.dumps({'pid': os.getpid(), 'eid': cache.sessions[0].eid, 'preloaded': 'ndx_spikesorting' in sys.modules,
                  'error': error}))
'''


def test_demo_synthesizes_in_another_process_while_this_one_imports(tmp_path):
    """alfnwb demo's two halves at once: the session written by a forked process is the one written here,
    the export's libraries are imported meanwhile, and an error of the synthesis is raised here."""
    import hashlib
    import json
    import subprocess
    import sys

    import pandas as pd

    from alfnwb.synthetic import write_cache

    def files(root):  # the cache tables by content: their metadata holds the minute they were written
        return {p.relative_to(root).as_posix(): pd.read_parquet(p).to_json() if p.suffix == '.pqt'
                else hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}

    pid_file = tmp_path / 'pid'
    r = subprocess.run([sys.executable, '-c', SYNTH_BESIDE, str(tmp_path / 'forked'), str(pid_file)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    here = write_cache(tmp_path / 'here', seed=3, sessions=1, n_units=4, duration=5.0)
    assert out['eid'] == here.sessions[0].eid and out['preloaded']
    assert int(pid_file.read_text()) != out['pid']  # written by another process
    assert files(tmp_path / 'forked') == files(tmp_path / 'here') and len(files(tmp_path / 'here')) > 20
    try:  # the second call's cache folder lies under a regular file: the same error as here
        write_cache(pid_file / 'cache', seed=3, sessions=1, n_units=4, duration=5.0)
    except Exception as e:
        assert out['error'] == f'{type(e).__name__}: {e}'
    else:
        raise AssertionError('write_cache under a regular file should fail')


def test_demo(tmp_path, capsys):
    assert main(['--quiet', 'demo', '--output', str(tmp_path / 'demo')]) == 0
    out = capsys.readouterr().out
    assert 'wrote ' in out and 'probe00' in out and 'histology alf' in out
    assert len(list((tmp_path / 'demo').glob('*.nwb'))) == 1
