"""The examples run (in this process, as ``python examples/<name>.py ARGS`` would run them)."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'


@pytest.fixture
def run(monkeypatch, capsys):
    """Run an example as ``__main__`` with its arguments; its standard output (the interpreter and the
    libraries are already imported: a subprocess per example cost ~5 s of imports each)."""

    def go(name: str, *args: str) -> str:
        monkeypatch.setattr(sys, 'argv', [str(EXAMPLES / name), *args])
        try:
            runpy.run_path(str(EXAMPLES / name), run_name='__main__')
        except SystemExit as e:  # a script that ends with sys.exit(main())
            assert e.code in (0, None), e.code
        return capsys.readouterr().out

    return go


def test_export_and_read_example(run, tmp_path):
    out = run('export_and_read.py', str(tmp_path))
    assert 'good units per Beryl region' in out and 'read_alf:' in out
    assert (tmp_path / 'session.nwb').exists()


def test_analyzer_example(run, tmp_path):
    out = run('analyzer_template_acg.py', str(tmp_path))
    assert 'SortingAnalyzer' in out and 'extensions: random_spikes, templates' in out
    pngs = list(tmp_path.glob('unit*.png'))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 10_000


def test_firing_rates_by_region_example(run):
    out = run('firing_rates_by_region.py')
    assert 'good units per Beryl region' in out and 'median_hz' in out
    assert ' spikes, ' in out


def test_psth_by_region_example(run):
    out = run('psth_by_region.py')
    assert 'response to stimulus onset (Hz' in out and 'c=1' in out and 'wrote ' in out
    assert 'trials left out for a NaN stimOn_times' in out
