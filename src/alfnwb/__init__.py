"""alfnwb: IBL spike sorting (ONE / ALF) to atlas-annotated NWB.

The public API is imported lazily so that ``import alfnwb`` (and the command line) stay fast.
"""

from __future__ import annotations

__version__ = '0.1.0'

#: Public name -> the module that defines it (imported on first use).
_API = {name: module for module, names in (
    ('alfnwb.export', ('export', 'build_nwbfile')),
    ('alfnwb.loading', ('load_probe', 'load_session', 'available_sortings')),
    ('alfnwb.readback', ('read_alf', 'read_alf_object', 'read_sorting_analyzer', 'info')),
    ('alfnwb.analyzer', ('build_analyzer',)),
    ('alfnwb.metadata', ('read_metadata',)),
    ('alfnwb.reanalysis', ('read_units', 'load_spike_times', 'to_sorting', 'update_catalog')),
    ('alfnwb.events', ('read_trials', 'peri_event', 'peri_event_by_region')),
    ('alfnwb.plots', ('plot_probe', 'plot_regions', 'plot_psth')),
) for name in names}

__all__ = ['__version__', *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f'module alfnwb has no attribute {name!r}')
