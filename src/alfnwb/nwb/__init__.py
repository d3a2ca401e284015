"""NWB builders: they take :mod:`alfnwb.model` data and know nothing of ONE."""
