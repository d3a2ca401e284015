"""The generated parts of the docs: tables of ``docs/nwb_layout.md`` from the layout and the registry.

The doc holds each table between ``<!-- layout:NAME -->`` and ``<!-- /layout:NAME -->``;
``tests/test_layout.py`` checks that they equal :func:`render_docs`, and
``python -m alfnwb.docgen docs/nwb_layout.md`` rewrites them.
"""

from __future__ import annotations

import re
from pathlib import Path

from .extensions import REGISTRY
from .nwb import layout

__all__ = ['render_docs', 'rewrite_docs', 'blocks']

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
            ('provenance table', layout.PROVENANCE_PATH), ('SortingAnalyzer of a probe', layout.container_path('<probe>')),
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
            'provenance': _table_markdown(layout.PROVENANCE), 'extensions': _extensions()}


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


if __name__ == '__main__':
    import sys

    for doc in sys.argv[1:]:
        print(f'{doc}: {"rewritten" if rewrite_docs(doc) else "up to date"}')
