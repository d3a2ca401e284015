"""The one description of the file: docs, writers, readers and the extension registry agree with it."""

import ast
import doctest
from pathlib import Path

import h5py
import numpy as np
import pytest

import alfnwb
from alfnwb import docgen, extensions, model
from alfnwb.nwb import layout

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / 'src' / 'alfnwb'


def test_docs_tables_equal_the_layout():
    found = docgen.blocks((ROOT / 'docs' / 'nwb_layout.md').read_text())
    expected = docgen.render_docs()
    assert sorted(found) == sorted(expected)
    for name, body in expected.items():
        assert found[name] == body, f'docs/nwb_layout.md table {name!r}: run python -m alfnwb.docgen docs/nwb_layout.md'


def test_docs_check_fails_on_a_changed_description(tmp_path):
    doc = tmp_path / 'layout.md'
    doc.write_text((ROOT / 'docs' / 'nwb_layout.md').read_text().replace('spikes.times exactly', 'spikes.times'))
    assert docgen.blocks(doc.read_text())['units'] != docgen.render_docs()['units']
    assert docgen.rewrite_docs(doc) is True
    assert docgen.blocks(doc.read_text())['units'] == docgen.render_docs()['units']


def _described(group) -> dict:
    return {k: group[k].attrs['description'] for k in group.keys() if 'description' in group[k].attrs}


def test_written_columns_are_the_layouts(session_export):
    with h5py.File(session_export.path, 'r') as f:
        units = _described(f[layout.UNITS_PATH])
        for col in layout.UNITS:  # the session has no waveforms.*: their columns are not written
            if col in layout.UNITS_WITH_WAVEFORMS:
                assert col.name not in units
            else:
                assert units[col.name] == col.description
        metrics = set(units) - set(layout.UNITS.names) - {f'{c.name}_index' for c in layout.UNITS.ragged}
        assert metrics and all(units[m] == layout.metric_description(m) for m in metrics)
        assert 'label' in metrics and units['label'] == layout.METRICS['label'].description
        electrodes = _described(f[layout.ELECTRODES_PATH])
        assert {c.name: c.description for c in layout.ELECTRODES}.items() <= electrodes.items()
        prov = _described(f[layout.PROVENANCE_PATH])
        assert {c.name: c.description for c in layout.PROVENANCE} == prov
        assert f[f'{layout.UNITS_PATH}/spike_times'].attrs['resolution'] == 1 / layout.WAVEFORM_RATE


def test_every_registered_extension_is_written_and_read(session_export):
    path = session_export.path
    probe = session_export.probes[0].probe
    with h5py.File(path, 'r') as f:
        groups = set(f[f'{layout.container_path(probe)}/extensions'].keys())
    alf_made = [e for e in extensions.REGISTRY.values() if e.kind != 'raw']
    assert all(set(e.nwb_groups) & groups for e in alf_made)
    back = alfnwb.read_sorting_analyzer(path, probe=probe)
    assert set(back.extensions) == {e.name for e in alf_made}
    assert alfnwb.info(path)['probes'][0]['extensions'] == [e.name for e in alf_made]


def test_build_order_puts_parents_first():
    order = extensions.BUILD_ORDER
    assert order[0] == 'random_spikes'
    for name, entry in extensions.REGISTRY.items():
        assert all(order.index(parent) < order.index(name) for parent in entry.depends)
    raw = [n for n, e in extensions.REGISTRY.items() if e.kind == 'raw']
    assert max(order.index(n) for n in raw) < order.index('templates')


def test_model_round_trip(session_export):
    session = session_export.session
    again = model.SessionData.from_dict(session.to_dict())
    assert again.eid == session.eid and again.date == session.date and again.start_time == session.start_time
    for a, b in zip(session.probes, again.probes):
        assert a.provenance == b.provenance
        for obj in ('spikes', 'clusters', 'channels'):
            da, db = getattr(a, obj), getattr(b, obj)
            assert sorted(da) == sorted(db)
            for k in da:
                if k == 'metrics':
                    assert da[k].equals(db[k])
                else:
                    np.testing.assert_array_equal(np.asarray(da[k]), np.asarray(db[k]))


@pytest.mark.parametrize('module', [layout, model])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_public_api_names():
    for name in ('read_units', 'load_spike_times', 'to_sorting', 'read_alf', 'read_sorting_analyzer', 'info', 'export'):
        assert callable(getattr(alfnwb, name))
    from alfnwb.reanalysis import read_units
    assert alfnwb.read_units is read_units


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield node.module or '', node.level, alias.name


def test_no_private_name_imported_across_modules():
    offenders = []
    for path in SRC.rglob('*.py'):
        for module, level, name in _imports(path):
            own = level > 0 or module.startswith('alfnwb')
            if name.startswith('_') and not name.startswith('__') and own and module != '_compat':
                offenders.append(f'{path.relative_to(SRC)}: from {"." * level}{module} import {name}')
            if not own and (name.startswith('_') or any(p.startswith('_') for p in module.split('.'))):
                if path.name != '_compat.py' and module != '__future__':
                    offenders.append(f'{path.relative_to(SRC)}: third-party internal {module}.{name}')
    assert offenders == []


def test_no_function_longer_than_60_lines():
    allowed = {('cli.py', 'build_parser')}  # a declarative argparse table
    long = []
    for path in SRC.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60 and (path.name, node.name) not in allowed:
                    long.append(f'{path.relative_to(SRC)}:{node.name} {n} lines')
    assert long == []


def test_export_is_callable_after_its_module_is_imported(tmp_path):
    import alfnwb.export as module  # sets the package attribute alfnwb.export to the module
    from alfnwb.errors import NotFoundError

    assert alfnwb.export is module
    with pytest.raises(NotFoundError, match='give a pid or an eid'):  # reached the function's own checks
        alfnwb.export(None, tmp_path / 'out.nwb')
    assert not (tmp_path / 'out.nwb').exists()


def test_every_module_has_a_layer_and_no_import_goes_up():
    names = {docgen._module_name(p, SRC) for p in SRC.rglob('*.py')} - {'', 'nwb'}  # package docstrings only
    assert [n for n in names if docgen._group(n) is None] == []
    graph = docgen.module_graph()
    assert graph['export'] >= {'loading', 'analyzer', 'nwb.units'}  # the graph holds the real imports
    up = [(a, b) for a, deps in graph.items() for b in deps if docgen.layer_of(b) > docgen.layer_of(a)]
    assert up == []
    assert 'loading' not in set().union(*(graph.get(m, set()) for m in ('nwb.units', 'nwb.electrodes', 'nwb.session',
                                                                        'analyzer', 'extensions', 'readback')))


def test_architecture_picture(tmp_path):
    out = docgen.plot_architecture(tmp_path / 'a.png')
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and (ROOT / 'docs' / 'architecture.png').exists()
