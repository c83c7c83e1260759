"""``dssl report``: PNG plots and one HTML page for an experiment, a grid or a run, logged to MLflow.

* :mod:`dssl.report.runs` picks the runs (an experiment's finished benchmark runs, a grid's cells or one
  run) and groups their metrics per method and backbone, one group per protocol id;
* :mod:`dssl.report.figures` draws the figures (metric bars with error bars, training curves, image grids);
* :mod:`dssl.report.dense` rebuilds each compared backbone from its logged checkpoint and computes PCA
  feature maps and segmentation predictions (linear probe, k-means + Hungarian) on the same images;
* :mod:`dssl.report.build` puts it together and writes ``report.html``.
"""
