"""NeCo/Leopart linear segmentation probe (protocol ``linear_seg_neco``, version 1).

The same evaluator as :class:`~dssl.evaluators.linear_seg.LinearSegEvaluator` (features extracted once
and cached for all epochs, a 1x1 convolution, optional BatchNorm in front of it); only the defaults
differ (:class:`~dssl.evaluators.linear_seg_neco_config.LinearSegNecoOptions`: 448 px input, 100x100
logits and masks, SGD 0.01 / momentum 0.9 / wd 1e-4, 25 epochs with a step at 20, absent classes scored
0). A separate protocol id keeps these numbers from being ranked with full-resolution ``linear_seg``.
"""

from __future__ import annotations

from typing import ClassVar

from dssl.evaluators.linear_seg import LinearSegEvaluator
from dssl.evaluators.linear_seg_neco_config import LinearSegNecoOptions


class LinearSegNecoEvaluator(LinearSegEvaluator):
    """Linear probe with NeCo/Leopart's defaults (see the module docstring).

    Example:
        >>> ev = LinearSegNecoEvaluator()  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc").protocol_id  # doctest: +SKIP
        'linear_seg_neco@1'
    """

    name: ClassVar[str] = "linear_seg_neco"
    protocol: ClassVar[str] = "linear_seg_neco"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[LinearSegNecoOptions]] = LinearSegNecoOptions  # type: ignore[assignment]
