"""The examples run."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'


def test_export_and_read_example(tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / 'export_and_read.py'), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'good units per Beryl region' in r.stdout and 'read_alf:' in r.stdout
    assert (tmp_path / 'session.nwb').exists()


def test_analyzer_example(tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / 'analyzer_template_acg.py'), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'SortingAnalyzer' in r.stdout and 'extensions: random_spikes, templates' in r.stdout
    pngs = list(tmp_path.glob('unit*.png'))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 10_000


def test_firing_rates_by_region_example():
    r = subprocess.run([sys.executable, str(EXAMPLES / 'firing_rates_by_region.py')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'good units per Beryl region' in r.stdout and 'median_hz' in r.stdout
    assert ' spikes, ' in r.stdout


def test_psth_by_region_example(tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / 'psth_by_region.py')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'response to stimulus onset (Hz' in r.stdout and 'c=1' in r.stdout and 'wrote ' in r.stdout
    assert 'trials left out for a NaN stimOn_times' in r.stdout
