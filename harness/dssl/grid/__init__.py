"""Comparison grids: a YAML file of objectives x backbones x datasets x seeds, run as MLflow child runs.

:mod:`dssl.grid.spec` reads and validates grid files (no torch); :mod:`dssl.grid.runner` resolves, runs
and summarises them (``dssl grid``).
"""
