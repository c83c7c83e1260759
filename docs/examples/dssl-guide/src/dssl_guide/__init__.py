"""guide: an objective, an augmentation, an evaluator, a dataset, a backbone and a lifecycle hook for dssl."""

__version__ = "0.1.0"
