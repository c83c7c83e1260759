"""STELLAR's views: the core multi-crop with STELLAR's crop scales, view counts and photometric recipe.

``src/datasets/imagenet_dataset.py`` renders 8 global (224 px, scale 0.36–1, h-flip) and 8 local (96 px,
scale 0.06–0.36) crops per image; ``STELLARModel.forward`` then applies ``random_color_blur`` (colour jitter
0.4/0.4/0.2/0.1 p 0.8, grayscale p 0.2, 9×9 Gaussian blur σ∈[0.1, 2] p 0.5) to the globals used as masked
views and to the locals, while global view 0 *without* colour augmentation is the ``image`` that is
reconstructed and gives the clustering targets. Here that clean view is ``Views.clean[0]``.

Example:
    >>> from dssl_stellar.config import StellarViewsOptions
    >>> views = StellarViews(StellarViewsOptions(global_size=32, local_size=16, n_global=2, n_local=2))(
    ...     torch.rand(3, 48, 48), generator=torch.Generator().manual_seed(0))
    >>> len(views.crops), views.clean is not None
    (4, True)
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the doctest)
from dssl.plugin import MultiCrop

from dssl_stellar.config import StellarViewsOptions

__all__ = ["StellarViews"]


class StellarViews(MultiCrop):
    """:class:`~dssl.augment.multicrop.MultiCrop` with :class:`StellarViewsOptions` defaults.

    Args:
        options: The view options; ``None`` gives STELLAR's defaults.
    """

    def __init__(self, options: StellarViewsOptions | None = None) -> None:
        super().__init__(options if options is not None else StellarViewsOptions())
