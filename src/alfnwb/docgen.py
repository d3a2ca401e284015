"""The generated parts of the docs: tables of ``docs/nwb_layout.md`` from the layout and the registry.

The doc holds each table between ``<!-- layout:NAME -->`` and ``<!-- /layout:NAME -->``;
``tests/test_layout.py`` checks that they equal :func:`render_docs`, and
``python -m alfnwb.docgen`` rewrites them and draws ``docs/architecture.png`` from the imports.
"""

from __future__ import annotations

import re
from pathlib import Path

from .extensions import REGISTRY
from .nwb import layout

__all__ = ['render_docs', 'rewrite_docs', 'blocks', 'LAYERS', 'module_graph', 'plot_architecture']

_BLOCK = r'(<!-- layout:{name} -->\n)(?:.*?\n)?(<!-- /layout:{name} -->)'


def _table_markdown(table: layout.Table) -> str:
    lines = ['| column | unit | dtype | ALF source | description |', '|---|---|---|---|---|']
    for c in table:
        name = f'`{c.name}`' + (' (ragged)' if c.ragged else '')
        alf = f'`{c.alf}`' if c.alf else ''
        lines.append(f'| {name} | {c.unit} | {c.dtype} | {alf} | {c.description} |')
    return '\n'.join(lines)


def _paths() -> str:
    rows = [('electrodes table', layout.ELECTRODES_PATH), ('units table', layout.UNITS_PATH),
            ('trials table', layout.TRIALS_PATH),
            ('provenance table', layout.PROVENANCE_PATH), ('SortingAnalyzer of a probe', layout.container_path('<probe>')),
            ('IBL\'s waveforms.* of a probe, as published', layout.ibl_waveforms_path('<probe>')),
            ('IBL\'s waveforms.templates of a probe', layout.ibl_waveforms_path('<probe>', 'waveform_templates')),
            *((f'session {k}', v) for k, v in layout.SESSION_PATHS.items())]
    return '\n'.join(['| what | path |', '|---|---|'] + [f'| {k} | `{v}` |' for k, v in rows])


def _extensions() -> str:
    lines = ['| extension | made | NWB (ndx-spikesorting) | source |', '|---|---|---|---|']
    lines += [f'| `{e.name}` | {e.kind} | {", ".join(f"`extensions/{g}`" for g in e.nwb_groups)} | {e.source} |'
              for e in REGISTRY.values()]
    return '\n'.join(lines)


def render_docs() -> dict[str, str]:
    """The generated tables, by marker name."""
    return {'paths': _paths(), 'electrodes': _table_markdown(layout.ELECTRODES),
            'units': _table_markdown(layout.UNITS), 'metrics': _table_markdown(layout.METRICS),
            'provenance': _table_markdown(layout.PROVENANCE), 'extensions': _extensions(),
            'ibl_waveforms': _table_markdown(layout.IBL_WAVEFORMS) + '\n\n' + _table_markdown(layout.IBL_WAVEFORM_TEMPLATES),
            'trials': _table_markdown(layout.TRIALS)}


def blocks(text: str) -> dict[str, str]:
    """The generated tables found in a markdown text, by marker name."""
    out = {}
    for name in render_docs():
        m = re.search(rf'<!-- layout:{name} -->\n(.*?)\n?<!-- /layout:{name} -->', text, flags=re.S)
        if m:
            out[name] = m.group(1).rstrip('\n')
    return out


def rewrite_docs(path: str | Path) -> bool:
    """Replace the generated tables of a markdown file; True if it changed."""
    text = Path(path).read_text()
    new = text
    for name, body in render_docs().items():
        new = re.sub(_BLOCK.format(name=name), lambda m: m.group(1) + body + '\n' + m.group(2), new, flags=re.S)
    if new != text:
        Path(path).write_text(new)
    return new != text




#: The layers of the package, in the order data flow through them: a module imports only modules of
#: its own layer or earlier ones (``tests/test_layout.py`` checks it on the real imports).
LAYERS = (
    ('foundation', ('errors', 'model', '_compat', 'kernels', 'fileio', 'allocator', 'collector', 'locks', 'metadata',
                    'atlas', 'nwb.layout', 'waveforms')),
    ('load', ('loading', 'synthetic')),
    ('analyse', ('extensions', 'analyzer')),
    ('build + write', ('nwb.session', 'nwb.electrodes', 'nwb.units', 'nwb.analyzer', 'nwb.chunks', 'nwb.io', 'nwb.waveforms',
                       'export')),
    ('publish', ('dandi', 'batch')),
    ('read back', ('nwb.reader', 'readback', 'reanalysis', 'events', 'plots')),
    ('interfaces', ('cli', 'docgen')),
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def _group(module: str) -> str | None:
    """The LAYERS entry a module belongs to (a subpackage's modules belong to it)."""
    names = [m for _, mods in LAYERS for m in mods]
    return next((m for m in sorted(names, key=len, reverse=True) if module == m or module.startswith(m + '.')), None)


def module_graph(root: str | Path | None = None) -> dict[str, set[str]]:
    """alfnwb's own imports (at module level and inside functions), between the LAYERS entries."""
    import ast

    root = Path(root) if root else Path(__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob('*.py')):
        name = _module_name(path, root)
        src = _group(name)
        if src is None:
            continue
        package = name.split('.') if path.name == '__init__.py' else name.split('.')[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or (node.level == 0 and not (node.module or '').startswith('alfnwb')):
                continue
            base = package[:len(package) - node.level + 1] if node.level else []
            parts = base + (node.module or '').split('.') if node.level else node.module.split('.')[1:]
            parts = [p for p in parts if p]
            for t in ['.'.join(parts)] + ['.'.join(parts + [a.name]) for a in node.names]:
                dst = _group(t)
                if dst and dst != src:
                    graph.setdefault(src, set()).add(dst)
    return graph


def layer_of(module: str) -> int:
    return next(i for i, (_, mods) in enumerate(LAYERS) if module in mods)


def plot_architecture(output: str | Path) -> Path:
    """The modules in their layers and every import between them, as a deterministic PNG."""
    from matplotlib.figure import Figure

    graph = module_graph()
    rows = max(8, *(len(mods) for _, mods in LAYERS))  # the tallest layer sets the height: every module shown
    fig = Figure(figsize=(12.0, 0.9 * rows + 1.0), dpi=100)
    ax = fig.add_axes((0.01, 0.02, 0.98, 1 - 1.0 / (0.9 * rows + 1.0)))
    pos = {}
    for i, (title, mods) in enumerate(LAYERS):
        x = i * 1.0
        ax.text(x, rows - 1.0, title, ha='center', fontsize=11, weight='bold')
        for j, m in enumerate(mods):
            pos[m] = (x, len(mods) - 1 - j + (rows - len(mods)) / 2 - 0.8)
            ax.text(*pos[m], m, ha='center', va='center', fontsize=9, zorder=3,
                    bbox={'boxstyle': 'round,pad=0.3', 'facecolor': '#e8f0fb', 'edgecolor': '#4a6fa5'})
    colours = ('#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d')
    for src in sorted(graph):
        for dst in sorted(graph[src] - {'errors'}):  # every module raises alfnwb's errors: not drawn
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            ax.annotate('', xy=(x1, y1), xytext=(x0, y0), zorder=1,
                        arrowprops={'arrowstyle': '->', 'color': colours[layer_of(src)], 'linewidth': 0.7,
                                    'connectionstyle': 'arc3,rad=0.15', 'shrinkA': 14, 'shrinkB': 14})
    ax.set_xlim(-0.6, len(LAYERS) - 0.4)
    ax.set_ylim(-1.5, rows - 0.5)
    ax.axis('off')
    fig.suptitle('alfnwb: modules by layer, data flowing left to right. An arrow: "imports" (read from the code,\n'
                 'coloured by the importing layer; imports of alfnwb.errors, used everywhere, not drawn)', fontsize=11)
    out = Path(output)
    fig.savefig(out, format='png', dpi=100, facecolor='white', metadata={'Software': None})
    return out


if __name__ == '__main__':
    docs = Path(__file__).resolve().parents[2] / 'docs'
    print(f'nwb_layout.md: {"rewritten" if rewrite_docs(docs / "nwb_layout.md") else "up to date"}')
    print(f'written {plot_architecture(docs / "architecture.png")}')
