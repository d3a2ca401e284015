"""NWB builders: they take :mod:`alfnwb.loading` data and know nothing of ONE."""
