"""alfnwb: IBL spike sorting (ONE / ALF) to atlas-annotated NWB.

The public API is imported lazily so that ``import alfnwb`` (and the command line) stay fast.
"""

from __future__ import annotations

__version__ = '0.1.0'

_API = {
    'export': ('alfnwb.export', 'export'),
    'build_nwbfile': ('alfnwb.export', 'build_nwbfile'),
    'load_probe': ('alfnwb.loading', 'load_probe'),
    'load_session': ('alfnwb.loading', 'load_session'),
    'available_sortings': ('alfnwb.loading', 'available_sortings'),
    'read_alf': ('alfnwb.readback', 'read_alf'),
    'read_sorting_analyzer': ('alfnwb.readback', 'read_sorting_analyzer'),
    'build_analyzer': ('alfnwb.analyzer', 'build_analyzer'),
    'info': ('alfnwb.readback', 'info'),
    'read_units': ('alfnwb.reanalysis', 'read_units'),
    'load_spike_times': ('alfnwb.reanalysis', 'load_spike_times'),
    'to_sorting': ('alfnwb.reanalysis', 'to_sorting'),
    'update_catalog': ('alfnwb.reanalysis', 'update_catalog'),
    'plot_probe': ('alfnwb.plots', 'plot_probe'),
    'plot_regions': ('alfnwb.plots', 'plot_regions'),
    'read_metadata': ('alfnwb.metadata', 'read_metadata'),
}

__all__ = ['__version__', *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f'module alfnwb has no attribute {name!r}')
