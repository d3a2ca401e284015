"""The suite needs nothing outside the repository: a clone with nothing beside it collects and runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    if shutil.which('git') is None or not (ROOT / '.git').exists():
        pytest.skip('not a git checkout: nothing to clone')
    dest = tmp_path_factory.mktemp('lonely') / 'alfnwb'
    subprocess.run(['git', 'clone', '--quiet', '--depth', '1', f'file://{ROOT}', str(dest)], check=True)
    assert not (dest.parent / 'shared').exists()
    return dest


def _pytest(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(clone / 'src'))
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)


def test_clone_collects_the_whole_suite(clone):
    here = _pytest(ROOT, '--collect-only', 'tests')
    there = _pytest(clone, '--collect-only', 'tests')
    assert there.returncode == 0, there.stdout[-2000:] + there.stderr[-2000:]
    count = [line for line in there.stdout.splitlines() if 'collected' in line or 'tests collected' in line]
    assert count and count[-1].split()[0] == [ln for ln in here.stdout.splitlines() if 'collected' in ln][-1].split()[0]


def test_clone_runs_the_fixture_tests(clone):
    r = _pytest(clone, 'tests/test_synthetic.py', '-k', 'geometry_matches_spikeglx_meta', '-rs')
    assert r.returncode == 0 and '2 passed' in r.stdout and 'skipped' not in r.stdout, r.stdout[-2000:]
