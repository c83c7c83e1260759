"""Comparison grids: a YAML file of objectives x backbones x datasets x seeds, run as MLflow child runs.

:mod:`dssl.grid.spec` reads and validates grid files (no torch); :mod:`dssl.grid.plan` resolves the cells,
:mod:`dssl.grid.launch` runs them, :mod:`dssl.grid.leaderboard` summarises them and :mod:`dssl.grid.runner`
does all of it in order (``dssl grid``).
"""
